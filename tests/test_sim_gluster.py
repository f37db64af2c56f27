"""The glusterfs storage manager against a real glusterd on loopback, read through libgfapi
(xcp-ng sm drivers/GlusterFSSR.py, FileSR.py; mount.glusterfs)."""

import os
import tempfile
import uuid

from simstorage import write_vhd
from test_sim_wire import fails

MOUNT_FAILED = "mount failed with return code 1"


def vhd_bytes(size):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.vhd")
        write_vhd(path, size)
        with open(path, "rb") as fh:
            return fh.read()


def gluster_sr_dir(peers, sr_uuid, vhds=(), under=""):
    """<volume>[/<under>]/<sr_uuid>/<vdi>.vhd written through the volume."""
    vol = peers.gluster.client(peers.GLUSTER_VOLUME)
    base = under + "/" + sr_uuid
    for d in (under, base):
        if d and not vol.is_dir(d):
            vol.mkdir(d)
    for vdi_uuid, size in vhds:
        vol.write("%s/%s.vhd" % (base, vdi_uuid), vhd_bytes(size))


def server(peers, host=None):
    return "%s:/%s" % (host or peers.gluster.address, peers.GLUSTER_VOLUME)


def gluster_sr(pool, xapi, peers, host=0, make_dir=True, vhds=(), **dconf):
    peers.gluster  # noqa: B018 (the property starts glusterd, or skips)
    sr_uuid = str(uuid.uuid4())
    if make_dir:
        gluster_sr_dir(peers, sr_uuid, vhds)
    sr = xapi.SR.introduce(sr_uuid, "gluster", "", "glusterfs", "user", True, {})
    dconf.setdefault("server", server(peers))
    pbd = xapi.PBD.create(
        {"host": pool.host(host).ref, "SR": sr, "other_config": {}, "device_config": dconf}
    )
    return sr, pbd


def test_gluster_plug_scan_probe(pool, xapi, peers):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    sr, pbd = gluster_sr(pool, xapi, peers, vhds=[(a, 1 << 30), (b, 64 << 20)])
    xapi.PBD.plug(pbd)
    assert xapi.PBD.get_currently_attached(pbd)
    xapi.SR.scan(sr)
    sizes = dict((xapi.VDI.get_uuid(r), xapi.VDI.get_virtual_size(r)) for r in xapi.SR.get_VDIs(sr))
    assert sizes == {a: str(1 << 30), b: str(64 << 20)}
    probe = xapi.SR.probe(pool.host(0).ref, {"server": server(peers)}, "glusterfs", {})
    assert "<UUID>%s</UUID>" % xapi.SR.get_uuid(sr) in probe
    xapi.PBD.unplug(pbd)
    assert not xapi.PBD.get_currently_attached(pbd)
    # the client logs where mount.glusterfs would, on the simulated host
    logs = os.listdir(pool.host(0).path("/var/log/glusterfs"))
    assert (
        "var-run-sr-mount-GlusterFS-%s-%s.log" % (peers.gluster.address, xapi.SR.get_uuid(sr))
        in logs
    )


def test_gluster_mount_failures_are_the_sm_codes(pool, xapi, peers):
    # GlusterFSSR.attach: any mount.glusterfs failure (exit 1) is SROSError 12
    for dconf in (
        {"server": "127.0.0.1:/%s" % peers.GLUSTER_VOLUME},  # nothing listens
        {"server": server(peers)[: -len(peers.GLUSTER_VOLUME)] + "nosuch"},
        {"server": "gluster1.example.com:/gv0"},  # not resolvable
        {"server": "192.0.2.1:/gv0"},  # not this machine
        {
            "server": "%s:/%s/nosuchdir" % (peers.gluster.address, peers.GLUSTER_VOLUME)
        },  # subdir mount
        {"server": peers.gluster.address},  # no volume
        {"server": "%s://%s" % (peers.gluster.address, peers.GLUSTER_VOLUME)},
        {"server": ""},
        # a backup server list mount.glusterfs cannot parse, or an option smuggled
        # in a value, refuse the mount even though the first server is fine
        {"server": server(peers), "backupservers": "[::1"},
        {"server": server(peers), "backupservers": "[gluster2]"},
        {"server": server(peers), "backupservers": "a,nosuchopt=1"},
        {"server": server(peers), "fetchattempts": "3 x"},
    ):
        sr, pbd = gluster_sr(pool, xapi, peers, **dconf)
        d = fails("SR_BACKEND_FAILURE_12", xapi.PBD.plug, pbd)
        assert d[2] == MOUNT_FAILED, (dconf, d)
        assert not xapi.PBD.get_currently_attached(pbd)
    # no server key: ConfigServerMissing 102
    sr = xapi.SR.introduce(str(uuid.uuid4()), "gluster", "", "glusterfs", "user", True, {})
    pbd = xapi.PBD.create(
        {"host": pool.host(0).ref, "SR": sr, "other_config": {}, "device_config": {}}
    )
    fails("SR_BACKEND_FAILURE_102", xapi.PBD.plug, pbd)
    # a probe's mount failure is not caught by GlusterFSSR.probe: generic fault 1200
    d = fails(
        "SR_BACKEND_FAILURE_1200",
        xapi.SR.probe,
        pool.host(0).ref,
        {"server": "127.0.0.1:/gv0"},
        "glusterfs",
        {},
    )
    assert d[2] == MOUNT_FAILED


def test_gluster_backup_servers_in_order(pool, xapi, peers):
    # backup-volfile-servers: tried after the server, in order, each once; fetch-attempts is
    # accepted and has no effect (glusterfsd.c: obsolete)
    a = str(uuid.uuid4())
    sr, pbd = gluster_sr(
        pool,
        xapi,
        peers,
        vhds=[(a, 1 << 20)],
        server="127.0.0.1:/%s" % peers.GLUSTER_VOLUME,
        backupservers="gluster2.example.com:127.0.0.3:%s" % peers.gluster.address,
        fetchattempts="1",
    )
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    assert [xapi.VDI.get_uuid(r) for r in xapi.SR.get_VDIs(sr)] == [a]
    xapi.PBD.unplug(pbd)
    sr, pbd = gluster_sr(
        pool,
        xapi,
        peers,
        server="127.0.0.1:/%s" % peers.GLUSTER_VOLUME,
        backupservers="127.0.0.3:gluster2.example.com",
        fetchattempts="100",
    )
    assert fails("SR_BACKEND_FAILURE_12", xapi.PBD.plug, pbd)[2] == MOUNT_FAILED


def test_gluster_server_lists_and_subdir_mounts(pool, xapi, peers):
    # mount.glusterfs: "h1,h2:/vol" tries h1 then h2; "h:/vol/dir" mounts a directory of it
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    sr, pbd = gluster_sr(
        pool,
        xapi,
        peers,
        vhds=[(a, 1 << 20)],
        server="127.0.0.1,%s:/%s" % (peers.gluster.address, peers.GLUSTER_VOLUME),
    )
    xapi.PBD.plug(pbd)
    assert [xapi.VDI.get_uuid(r) for r in xapi.SR.get_VDIs(sr)] == [a]  # the plug's scan
    xapi.PBD.unplug(pbd)
    sr_uuid = str(uuid.uuid4())
    gluster_sr_dir(peers, sr_uuid, [(b, 2 << 20)], under="/tenant1")
    sr = xapi.SR.introduce(sr_uuid, "gluster", "", "glusterfs", "user", True, {})
    pbd = xapi.PBD.create(
        {
            "host": pool.host(0).ref,
            "SR": sr,
            "other_config": {},
            "device_config": {"server": server(peers) + "/tenant1"},
        }
    )
    xapi.PBD.plug(pbd)
    assert [xapi.VDI.get_virtual_size(r) for r in xapi.SR.get_VDIs(sr)] == [str(2 << 20)]
    probe = xapi.SR.probe(pool.host(0).ref, {"server": server(peers) + "/tenant1"}, "glusterfs", {})
    assert "<UUID>%s</UUID>" % sr_uuid in probe and "<UUID>%s</UUID>" % a not in probe
    xapi.PBD.unplug(pbd)


def test_gluster_missing_sr_directory(pool, xapi, peers):
    # GlusterFSSR.attach does not look for <volume>/<sr-uuid>: the plug succeeds, the scan
    # fails (FileSR._loadvdis listdir, retried, then SRScan 40), and detach leaves the volume
    # mounted (checkmount() is false), so plugging again meets that mount: exit 32.
    sr, pbd = gluster_sr(pool, xapi, peers, make_dir=False)
    xapi.PBD.plug(pbd)
    d = fails("SR_BACKEND_FAILURE_40", xapi.SR.scan, sr)
    assert "Timeout" in d[2]
    xapi.PBD.unplug(pbd)
    d = fails("SR_BACKEND_FAILURE_12", xapi.PBD.plug, pbd)
    assert d[2] == "mount failed with return code 32"
    # once the directory exists, checkmount() holds and the SR plugs and unplugs
    gluster_sr_dir(peers, xapi.SR.get_uuid(sr))
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    xapi.PBD.unplug(pbd)


def test_gluster_vdi_attach_needs_the_file(pool, xapi, peers):
    from test_sim_vm_vbd import vbd_rec

    a = str(uuid.uuid4())
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    host = [i for i in range(3) if pool.host(i).ref == xapi.VM.get_resident_on(vm)][0]
    sr, pbd = gluster_sr(pool, xapi, peers, host=host, vhds=[(a, 1 << 20)])
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    vdi = xapi.VDI.get_by_uuid(a)
    peers.gluster.client(peers.GLUSTER_VOLUME).unlink("/%s/%s.vhd" % (xapi.SR.get_uuid(sr), a))
    vbd = xapi.VBD.create(vbd_rec(vm, vdi))
    d = fails("SR_BACKEND_FAILURE_46", xapi.VBD.plug, vbd)
    assert "VDI %s unavailable" % a in d[2]
