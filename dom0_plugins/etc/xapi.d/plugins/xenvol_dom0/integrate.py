"""What integrators need beyond attach and detach: extend a volume after its backend grew,
describe a host as a storage initiator (connector), and name the VDIs of volumes so that
people and backup tools see what they are. Keeping SRs plugged where VMs may run is
placement.py's."""

import XenAPI

from . import log, storage
from . import vbd as vbds
from .call import NULL
from .errors import BACKEND_FAILURE, XenvolError, from_xapi
from .marks import NAMED
from .undo import compensation

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple  # noqa: F401

    from .call import Call  # noqa: F401
    from .check import Fields  # noqa: F401
    from .txn import Steps  # noqa: F401

# What a host presents to arrays (os-brick's connector sources on Linux; a driver reads its
# transport's own, e.g. the FC ports).
NVME_HOSTNQN = "/etc/nvme/hostnqn"
NVME_HOSTID = "/etc/nvme/hostid"


# ---------------------------------------------------------------------- names and tags
def vdi_name(settings, cfg, volume_type):
    # type: (Dict[str, Any], Any, str) -> str
    """The VDI's name_label: the operator's tags first (Xen Orchestra skips a disk whose name
    starts with [NOBAK] in backups and contains [NOSNAP] in snapshots), then the volume."""
    volume = cfg.get("display_name") or (
        ("volume-%s" % cfg.volume_id) if cfg.get("volume_id") else "%s volume" % volume_type
    )
    tags = "".join(settings["vdi_name_tags"])
    return ("%s %s" % (tags, volume)).strip()


def name_vdi(call, vdi, cfg, volume_type, steps):
    # type: (Call, str, Any, str, Steps) -> None
    """Name the volume's VDI unless someone else named it: SMs leave raw LUNs nameless, and
    other_config xenvol-named keeps the name xenvol gave, so an admin's rename is kept."""
    x = call.x
    # As the call found it (after its scan), else read.
    rec = call.records.get(vdi) or call.do("reading the VDI", x.VDI.get_record, vdi)
    ours = rec["other_config"].get(NAMED)
    if rec["name_label"] and rec["name_label"] != ours:
        return
    name = vdi_name(call.settings, cfg, volume_type)
    description = ("xenvol %s volume %s" % (volume_type, cfg.get("volume_id") or "")).strip()
    if rec["name_label"] == name and rec["name_description"] == description:
        return
    with steps.change(
        "name the VDI",
        "restore_vdi_name",
        vdi_uuid=rec["uuid"],
        label=rec["name_label"],
        text=rec["name_description"],
        named=ours,
    ):
        call.do("naming the VDI", x.VDI.set_name_label, vdi, name)
        call.do("describing the VDI", x.VDI.set_name_description, vdi, description)
        if ours is not None:
            call.do("marking the VDI named", x.VDI.remove_from_other_config, vdi, NAMED)
        try:
            x.VDI.add_to_other_config(vdi, NAMED, name)
        except XenAPI.Failure as f:
            # A concurrent call (the record is the one this call found) named it too.
            if f.details[0] != "MAP_DUPLICATE_KEY":
                raise from_xapi(f, "marking the VDI named") from None


# ---------------------------------------------------------------------- extend


@compensation("restore_vdi_name")
def restore_vdi_name(call, vdi_uuid, label, text, named):
    """Undo name_vdi: the VDI's name, and the name xenvol gave it, as they were."""
    vdi = call.find("VDI", vdi_uuid)
    if vdi is None:
        return
    call.x.VDI.set_name_label(vdi, label)
    call.x.VDI.set_name_description(vdi, text)
    if NAMED in call.x.VDI.get_other_config(vdi):
        call.x.VDI.remove_from_other_config(vdi, NAMED)
    if named is not None:
        call.x.VDI.add_to_other_config(vdi, NAMED, named)


def is_volume(call, vdi):
    # type: (Call, str) -> bool
    """A VDI xenvol attached (a marked VBD) or connected (a host's claim)."""
    x = call.x
    if any(k.startswith(storage.CONNECTED) for k in x.VDI.get_other_config(vdi)):
        return True
    return any(x.VBD.get_other_config(v).get(vbds.MARK) == "true" for v in x.VDI.get_VBDs(vdi))


def extend(call, sr, vdi):
    # type: (Call, str, str) -> Dict[str, Any]
    """After the backend grew the volume: each host with the SR plugged re-reads the LUN's
    capacity (sm's on-slave refresh_lun_size_by_SCSIid, what LVHDSR does before a resize),
    then SR.scan (run by xapi on the SR master) sets the VDI's virtual_size from it."""
    x = call.x
    rec = call.do("reading the VDI", x.VDI.get_record, vdi)
    old = int(rec["virtual_size"])
    refreshed = []
    scsi_id = rec["sm_config"].get("SCSIid")
    if scsi_id:
        master = x.pool.get_master(x.pool.get_all()[0])
        hosts = [
            x.PBD.get_host(p)
            for p in call.do("listing the SR's PBDs", x.SR.get_PBDs, sr)
            if x.PBD.get_currently_attached(p)
        ]
        # The master first: SR.scan reads the size there.
        for host in sorted(set(hosts), key=lambda h: h != master):
            host_uuid = x.host.get_uuid(host)
            log.step("refreshing the LUN's size", host_uuid=host_uuid, scsi_id=scsi_id)
            answer = call.do(
                "refreshing the LUN's size on host %s" % host_uuid,
                x.host.call_plugin,
                host,
                "on-slave",
                "refresh_lun_size_by_SCSIid",
                {"SCSIid": scsi_id},
            )
            if answer != "True":
                raise XenvolError(
                    BACKEND_FAILURE,
                    "host %s could not refresh the size "
                    "of LUN %s (its paths disagree on the capacity; see SMlog)"
                    % (host_uuid, scsi_id),
                    host_uuid=host_uuid,
                    scsi_id=scsi_id,
                )
            refreshed.append(host_uuid)
    call.do("scanning the SR", x.SR.scan, sr)
    rec = call.do("reading the VDI", x.VDI.get_record, vdi)
    new = int(rec["virtual_size"])
    guests = []
    for vbd in rec["VBDs"]:
        v = x.VBD.get_record(vbd)
        vm = x.VM.get_record(v["VM"])
        guests.append(
            {
                "vm_uuid": vm["uuid"],
                "vbd_uuid": v["uuid"],
                "device": v["device"],
                "plugged": v["currently_attached"],
                "sees": _guest_sees(vm, v, rec, new > old),
            }
        )
    return {
        "vdi_uuid": rec["uuid"],
        "sr_uuid": x.SR.get_uuid(sr),
        "old_size": old,
        "new_size": new,
        "grew": new > old,
        "refreshed_hosts": refreshed,
        "vbds": guests,
    }


def _guest_sees(vm, vbd, vdi, grew):
    # type: (Dict[str, Any], Dict[str, Any], Dict[str, Any], bool) -> str
    """What the guest sees after a grow. XAPI has no online resize of a raw LUN (no VBD
    resize message; VDI.resize/resize_online need the SM's VDI_RESIZE(_ONLINE), which the
    LUN-per-VDI SMs do not have); what carries it is the dom0 kernel."""
    if not grew:
        return "unchanged"
    if not vbd["currently_attached"]:
        return "the new size at its next plug (VM start)"
    if vdi["sm_config"].get("backend-kind") != "vbd":
        # tapdisk (vbd3) read the image's size when it opened it at plug.
        return "the old size until the disk is plugged again (unplug/plug or VM restart)"
    if vm["domain_type"] == "hvm" and vm["guest_metrics"] == NULL:
        # qemu's emulated disk keeps the size it had at domain start.
        return "the old size until the VM restarts (emulated disk, no PV drivers)"
    # Linux xen-blkback xen_blkif_schedule: each loop (at least every LRU_INTERVAL, 100 ms)
    # compares the device's size; xen_vbd_resize writes `sectors` to xenstore and the
    # frontend (Linux blkfront) sets the disk's capacity.
    return (
        "the new size: blkback sees dom0's device grew within ~100 ms and writes the "
        "new sectors to xenstore; a Linux guest's blkfront then sets the capacity"
    )


# ---------------------------------------------------------------------- connector
def connector(call):
    # type: (Call) -> Dict[str, Any]
    """This host as an initiator, from what XAPI and dom0 say (the drivers add the facts of
    their own transport: Driver.connector_properties)."""
    x = call.x
    rec = call.do("reading the host", x.host.get_record, call.host)
    ips = [rec["address"]] if rec["address"] else []
    for pif in rec["PIFs"]:
        try:
            p = x.PIF.get_record(pif)
        except XenAPI.Failure:
            continue
        for ip in [p.get("IP")] + [a.split("/")[0] for a in p.get("IPv6") or []]:
            if ip and ip not in ips:
                ips.append(ip)
    out = {
        "host_uuid": rec["uuid"],
        "host": rec["hostname"],
        "name_label": rec["name_label"],
        "ip": rec["address"],
        "ips": ips,
        "os_type": "linux2",
        "platform": "x86_64",
        # xapi keeps the IQN in other_config (the host.iscsi_iqn field mirrors it).
        "initiator": rec["other_config"].get("iscsi_iqn") or rec.get("iscsi_iqn") or "",
        "multipath": bool(rec.get("multipathing"))
        or rec["other_config"].get("multipathing") == "true",
    }
    for key, path in (("nqn", NVME_HOSTNQN), ("nvme_hostid", NVME_HOSTID)):
        value = _read(path)
        if value:
            out[key] = value
    return out


def _read(path):
    # type: (str) -> str
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def placement_arg(a, settings):
    # type: (Fields, Dict[str, Any]) -> str
    return a.choice("placement", ("host", "pool"), settings["placement"])
