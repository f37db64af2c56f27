"""Storage set-ups of the simulator's tests, made through the wire: an SR introduced and a PBD
made as a test needs them, an hba SR showing LUNs of the simulated FC fabric, the VDI.create
record that claims one of its LUNs, VDI.introduce's arguments, and VHD files."""

import subprocess

SR_UUID = "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ab"
TARGET = "50:0a:09:82:99:1b:8d:c5"


def introduce(xapi, type_="cephfs", uuid=SR_UUID, shared=True):
    """SR.introduce of an SR named "vol" of `type_`, without a PBD."""
    return xapi.SR.introduce(uuid, "vol", "", type_, "", shared, {})


def pbd(xapi, host, sr, dconf):
    """PBD.create of `sr` on `host` (a ref) with device_config `dconf`, unplugged."""
    return xapi.PBD.create(
        {"host": host, "SR": sr, "device_config": dconf, "other_config": {"x": "y"}}
    )


def hba_luns(pool, xapi, luns, shared=False):
    """An hba SR on host 0, plugged and scanned, showing LUNs {number: (scsi id, size)} of
    TARGET zoned to the host's first port; returns (SR, PBD, {scsi id: VDI ref})."""
    sr = introduce(xapi, "hba", shared=shared)
    wwpn = pool.admin.fc_fabric()[pool.host(0).uuid][0]
    for number, (scsi_id, size) in luns.items():
        pool.admin.fc_lun(TARGET, number, scsi_id, str(size))
    pool.admin.fc_zone(wwpn, TARGET)
    p = pbd(xapi, pool.host(0).ref, sr, {})
    xapi.PBD.plug(p)
    xapi.SR.scan(sr)
    by_id = dict((xapi.VDI.get_sm_config(v)["SCSIid"], v) for v in xapi.SR.get_VDIs(sr))
    return sr, p, by_id


def claim(sr, size, other_config=None):
    """A VDI.create record for a raw LUN of at least `size` bytes of an hba SR."""
    return {
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": other_config or {},
        "name_label": "",
        "name_description": "",
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    }


def vdi_introduce_args(
    uuid,
    sr,
    location,
    sm_config=None,
    name_label="",
    type_="user",
    sharable=False,
    other_config=None,
    xenstore_data=None,
):
    """VDI.introduce's arguments in its order (uuid, name_label, name_description, SR, type,
    sharable, read_only, other_config, location, xenstore_data, sm_config), for a VDI that is
    not read-only and has no description."""
    return (
        uuid,
        name_label,
        "",
        sr,
        type_,
        sharable,
        False,
        other_config or {},
        location,
        xenstore_data or {},
        sm_config or {},
    )


def write_vhd(path, size):
    """A dynamic VHD of `size` bytes at `path`, made by qemu-img (force_size: that size, not
    rounded to a CHS geometry)."""
    subprocess.check_call(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "vpc",
            "-o",
            "subformat=dynamic,force_size=on",
            path,
            str(size),
        ]
    )
