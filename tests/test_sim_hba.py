"""The hba storage manager over the simulated FC fabric (sm HBASR.py, LUNperVDI.py, devscan.py)."""

import os
import threading
import uuid

import pytest

from simstorage import claim
from test_sim_wire import fails

T = "500a0982991b8dc5"


def hba_sr(pool, xapi, dconf=None, host=0):
    sr = xapi.SR.introduce(str(uuid.uuid4()), "hba", "", "hba", "", False, {})
    pbd = xapi.PBD.create(
        {"host": pool.host(host).ref, "SR": sr, "device_config": dconf or {}, "other_config": {}}
    )
    xapi.PBD.plug(pbd)
    return sr, pbd


def test_rescan_follows_zoning_masking_and_removal(pool, xapi):
    h = pool.host(0)
    p1, p2 = pool.admin.fc_fabric()[h.uuid]
    pool.admin.fc_lun(T, 1, "3600a01", "1048576")
    pool.admin.fc_lun(T, 300, "3600a02", "2097152", [p2])  # masked to the second port
    sr, _pbd = hba_sr(pool, xapi)
    xapi.SR.scan(sr)
    assert xapi.SR.get_VDIs(sr) == []  # nothing zoned yet
    pool.admin.fc_zone(p1, T)
    pool.admin.fc_zone(p2, T)
    xapi.SR.scan(sr)
    luns = dict(
        (xapi.VDI.get_sm_config(v)["SCSIid"], xapi.VDI.get_sm_config(v)["LUNid"])
        for v in xapi.SR.get_VDIs(sr)
    )
    assert luns == {"3600a01": "1", "3600a02": "300"}
    # what the host's kernel shows: fc_host ports, by-path (udev LUN format above 255), by-scsid
    assert open(h.path("/sys/class/fc_host/host0/port_name")).read().strip() == "0x" + p1
    by_path = sorted(os.listdir(h.path("/dev/disk/by-path")))
    assert "pci-0000:02:00.0-fc-0x%s-lun-0x012c000000000000" % T in by_path
    assert len(os.listdir(h.path("/dev/disk/by-scsid/3600a01"))) == 2  # two paths
    pool.admin.fc_remove_lun(T, 1)
    xapi.SR.scan(sr)
    assert [xapi.VDI.get_sm_config(v)["SCSIid"] for v in xapi.SR.get_VDIs(sr)] == ["3600a02"]
    assert not os.path.exists(h.path("/dev/disk/by-scsid/3600a01"))


def test_type_filter_and_no_hba(pool, xapi):
    # devscan match_filterstr: a regex on the HBA driver name (qla2xxx here); no match ->
    # HBASR.scan SRUnavailable. "FC" matches no driver name.
    sr, _p = hba_sr(pool, xapi, {"type": "FC"})
    fails("SR_BACKEND_FAILURE_47", xapi.SR.scan, sr)
    sr, _p = hba_sr(pool, xapi, {"type": "qla"})
    xapi.SR.scan(sr)
    pool.admin.fc_ports(pool.host(0).uuid, [])
    fails("SR_BACKEND_FAILURE_47", xapi.SR.scan, sr)


def test_vdi_attach_of_a_vanished_lun_is_vdi_unavailable(pool, xapi):
    from test_sim_vm_vbd import vbd_rec

    vm = xapi.VM.get_by_name_label("vm-1")[0]
    host = [i for i in range(3) if pool.host(i).ref == xapi.VM.get_resident_on(vm)][0]
    for p in pool.admin.fc_fabric()[pool.host(host).uuid]:
        pool.admin.fc_zone(p, T)
    pool.admin.fc_lun(T, 2, "3600a03", "1048576")
    sr, _p = hba_sr(pool, xapi, host=host)
    xapi.SR.scan(sr)
    vdi = xapi.SR.get_VDIs(sr)[0]
    # claimed as sm allows it: VDI.create on the hba SR (LUNperVDI.RAWVDI.create)
    assert xapi.VDI.create(claim(sr, 1048576)) == vdi
    vbd = xapi.VBD.create(vbd_rec(vm, vdi))
    pool.admin.fc_remove_lun(T, 2)
    fails("SR_BACKEND_FAILURE_46", xapi.VBD.plug, vbd)


def fc_disks(h):
    """H:C:T:L -> wwid of the disks under the host's /sys/block, read as the fibre_channel
    driver reads them: a disk whose entries vanish between the listing and the reading is
    left out (on real sysfs too, a removed disk's entries go while a reader walks them)."""
    out = {}
    for dev in os.listdir(h.path("sys/block")):
        try:
            hctl = os.path.basename(os.readlink(h.path("sys/block", dev, "device")))
            with open(h.path("sys/block", dev, "device", "wwid")) as fh:
                out[hctl] = (dev, fh.read())
        except FileNotFoundError:
            continue
    return out


@pytest.mark.slow
def test_a_reader_during_rescans_meets_whole_entries(pool):
    """Rescans (xapi's background scans run them at any time) while another LUN comes and
    goes: the disk that stays keeps its name and is always there, whole; the other is there
    whole or not at all; nothing half written, no entry being built, ever shows."""
    h = pool.host(0)
    fabric = pool.sim.sm.driver("hba").fabric
    fabric.zone(fabric.host_ports(h)[0], T)
    fabric.add_lun(T, 5, "3600a05", 1 << 20)
    fabric.rescan(h)
    done = threading.Event()

    def churn():
        try:
            for i in range(200):
                if i % 2:
                    fabric.remove_lun(T, 1)  # LUN 1 sorts before LUN 5: no renaming of sdb
                else:
                    fabric.add_lun(T, 1, "3600a01", 1 << 20)
                fabric.rescan(h)
                fabric.rescan(h)  # a rescan that changes nothing
        finally:
            done.set()

    t = threading.Thread(target=churn)
    t.start()
    reads = 0
    try:
        while not done.is_set():
            disks = fc_disks(h)
            assert disks.pop("0:0:0:5") == ("sdb", "naa.600a05\n")
            assert disks in ({}, {"0:0:0:1": ("sdc", "naa.600a01\n")}), disks
            assert set(os.listdir(h.path("sys/block"))) <= {"sdb", "sdc"}
            reads += 1
    finally:
        t.join()
    assert reads > 0 and fc_disks(h) == {"0:0:0:5": ("sdb", "naa.600a05\n")}
