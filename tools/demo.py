"""`make demo`: a simulated two-host pool, volumes attached to VMs with the xenvol client and
detached again, with real storage peers when they can start here.

Runs the real path: xenvol client -> xapisim -> exec'd dom0 plugin -> xapisim -> tgt / ganesha."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import XenAPI

import xenvol

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PLUGINS = os.path.join(REPO, "dom0_plugins", "etc", "xapi.d", "plugins")

from xapisim import cli  # noqa: E402
from xapisim.peers import ganesha, tgt  # noqa: E402

CHAP_USER, CHAP_SECRET = "demo", "demo-chap-secret-1"


def say(title):
    print("\n== %s" % title)


def peers_possible():
    if os.environ.get("XENVOL_PRIVATE_NETNS") != "1":
        return "not in a private network namespace (run as root: make demo)"
    missing = [t for t in ("tgtd", "ganesha.nfsd", "rpcbind", "qemu-img") if not shutil.which(t)]
    return "missing %s" % ", ".join(missing) if missing else None


def show_state(x, sr_uuid, vdi_uuid, vbd_uuid):
    sr = x.SR.get_by_uuid(sr_uuid)
    rec = x.SR.get_record(sr)
    print(
        "SR   %s  type=%s shared=%s label=%r"
        % (sr_uuid, rec["type"], rec["shared"], rec["name_label"])
    )
    for pbd in rec["PBDs"]:
        p = x.PBD.get_record(pbd)
        print(
            "PBD  %s  host=%s attached=%s device_config=%s"
            % (
                p["uuid"],
                x.host.get_name_label(p["host"]),
                p["currently_attached"],
                json.dumps(p["device_config"], sort_keys=True),
            )
        )
    v = x.VDI.get_record(x.VDI.get_by_uuid(vdi_uuid))
    print(
        "VDI  %s  size=%s sm_config=%s"
        % (vdi_uuid, v["virtual_size"], json.dumps(v["sm_config"], sort_keys=True))
    )
    b = x.VBD.get_record(x.VBD.get_by_uuid(vbd_uuid))
    print(
        "VBD  %s  vm=%s userdevice=%s device=%s attached=%s mode=%s"
        % (
            vbd_uuid,
            x.VM.get_name_label(b["VM"]),
            b["userdevice"],
            b["device"],
            b["currently_attached"],
            b["mode"],
        )
    )


def attach_detach(client, x, info, vm_name, label):
    vm = x.VM.get_by_name_label(vm_name)[0]
    host = x.VM.get_resident_on(vm)
    say("attach %s to %s (running on %s)" % (label, vm_name, x.host.get_name_label(host)))
    started = time.time()
    att = client.attach(info, vm_name)
    print(att)
    print("attached in %.2f s" % (time.time() - started))
    show_state(x, att.sr_uuid, att.vdi_uuid, att.vbd_uuid)
    say("detach")
    print(client.detach(attachment=att))


def storage_state(sim):
    snap = sim.db.snapshot()
    out = dict((cls, snap[cls]) for cls in ("SR", "PBD", "VDI", "secret"))
    out["VBD"] = sorted(snap["VBD"])
    return out


def cold_attach_and_start(client, x, info, vm_name):
    """A halted VM: the volume is attached unplugged on the VM's host, and comes up with the VM."""
    vm = x.VM.get_by_name_label(vm_name)[0]
    host = x.VM.get_affinity(vm)
    say(
        "cold attach to %s (halted, affinity %s), then start it there"
        % (vm_name, x.host.get_name_label(host))
    )
    att = client.attach(info, vm_name)
    print(att)
    started = time.time()
    x.VM.start_on(vm, host, False, False)
    vbd = x.VBD.get_by_uuid(att.vbd_uuid)
    print(
        "VM started in %.2f s; volume VBD attached=%s device=%s"
        % (time.time() - started, x.VBD.get_currently_attached(vbd), x.VBD.get_device(vbd))
    )
    x.VM.hard_shutdown(vm)
    say("shut down, detach")
    print(client.detach(attachment=att))


def main():
    work = tempfile.mkdtemp(prefix="xenvol-demo-", dir="/tmp")
    started = []
    try:
        reason = peers_possible()
        target = nfs = None
        if reason is None:
            say("starting real storage peers on 127.0.0.1 (private network namespace)")
            target = tgt.Target(os.path.join(work, "tgt")).start()
            started.append(target)
            iqn = "iqn.2026-11.org.xenvol.demo:vol"
            target.add_target(iqn)
            target.add_lun(iqn, 1, 64)
            target.require_chap(iqn, CHAP_USER, CHAP_SECRET)
            print("iSCSI target %s at %s, LUN 1 (64 MiB), CHAP required" % (iqn, target.portal))
            nfs = ganesha.Server(os.path.join(work, "nfs"))
            export = nfs.add_export("/volumes")
            sr_uuid, vdi_uuid = str(uuid.uuid4()), str(uuid.uuid4())
            os.makedirs(os.path.join(export, sr_uuid))
            subprocess.check_call(
                [
                    "qemu-img",
                    "create",
                    "-q",
                    "-f",
                    "vpc",
                    "-o",
                    "subformat=dynamic,force_size=on",
                    os.path.join(export, sr_uuid, vdi_uuid + ".vhd"),
                    "1G",
                ]
            )
            nfs.start()
            started.append(nfs)
            print("NFS export 127.0.0.1:/volumes with %s/%s.vhd (1 GiB)" % (sr_uuid, vdi_uuid))
        else:
            say("real storage peers skipped: %s" % reason)

        timing = os.environ.get("SM_TIMING") or "fast"
        say(
            "simulated pool: 2 hosts, 4 VMs, xenvol plugin installed on every host; "
            "SM timing %s (make demo SM_TIMING=real for the real SM's waits)" % timing
        )
        sim, servers, pool = cli.start(
            hosts=2, vms=4, state_dir=os.path.join(work, "pool"), plugins=PLUGINS, sm_timing=timing
        )
        started.append(servers)
        session = XenAPI.Session(pool["url"])
        session.login_with_password(pool["user"], pool["password"], "2.21", "xenvol-demo")
        x = session.xenapi
        for _ref, rec in sorted(x.VM.get_all_records().items(), key=lambda r: r[1]["name_label"]):
            if not rec["is_control_domain"]:
                host = rec["resident_on"]
                print(
                    "%-6s %-8s %s"
                    % (
                        rec["name_label"],
                        rec["power_state"],
                        x.host.get_name_label(host) if host != "OpaqueRef:NULL" else "",
                    )
                )
        master = x.pool.get_master(x.pool.get_all()[0])
        print("plugin: %s" % x.host.call_plugin(master, "xenvol", "version", {}))
        before = storage_state(sim)

        client = xenvol.Client(pool["url"], pool["user"], pool["password"])
        if target is not None:
            # The client turns the CHAP password into a XAPI secret: only its uuid reaches
            # dom0, where XAPI copies it into the PBD's own secret.
            info = {
                "driver_volume_type": "iscsi",
                "data": {
                    "target_portal": target.portal,
                    "target_iqn": iqn,
                    "target_lun": 1,
                    "auth_method": "CHAP",
                    "auth_username": CHAP_USER,
                    "auth_password": CHAP_SECRET,
                    "volume_id": "demo-1",
                },
            }
            attach_detach(client, x, info, "vm-3", "iSCSI LUN 1 with CHAP")
            cold_attach_and_start(client, x, info, "vm-4")
            info = {
                "driver_volume_type": "nfs",
                "data": {
                    "server": "127.0.0.1",
                    "serverpath": "/volumes",
                    "sr_uuid": sr_uuid,
                    "vdi_uuid": vdi_uuid,
                },
            }
            attach_detach(client, x, info, "vm-1", "NFS VHD")
            client.close()
        else:
            host0 = sim.hosts[0]
            d = os.path.join(host0.root, "var/lib/xenvol/volumes")
            os.makedirs(d, exist_ok=True)
            vdi_uuid = str(uuid.uuid4())
            with open(os.path.join(d, vdi_uuid + ".raw"), "wb") as fh:
                fh.truncate(64 << 20)
            info = {
                "driver_volume_type": "file",
                "data": {"path": "/var/lib/xenvol/volumes", "vdi_uuid": vdi_uuid},
            }
            attach_detach(client, x, info, "vm-1", "a raw file on the host")
        client.close()

        say("cleaned up")
        after = storage_state(sim)
        print(
            "storage state (SRs, PBDs, VDIs, secrets, VBDs) identical to before: %s"
            % (after == before)
        )
        log = os.path.join(sim.hosts[1].root, "var/log/xenvol.log")
        if os.path.exists(log):
            say("dom0 log of %s (%s)" % (x.host.get_name_label(sim.hosts[1].ref), log))
            with open(log) as fh:
                lines = fh.read().splitlines()
            print("\n".join(lines[-12:]))
            assert CHAP_SECRET not in "\n".join(lines)
        session.xenapi.session.logout()
        return 0 if after == before else 1
    finally:
        for thing in reversed(started):
            thing.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
