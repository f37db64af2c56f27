"""SRs and PBDs: bring an SR up on this host, and release it when nothing uses it.

Ownership marks live in SR.other_config (PBD.create ignores other_config):
  xenvol-introduced = true     xenvol introduced this SR and may forget it
  xenvol-pbd-<host uuid> = true  xenvol created that host's PBD
A VDI that connect_volume holds for a host carries xenvol-connected-<host uuid> in its
other_config; a VBD xenvol created carries xenvol = true."""
import XenAPI

from . import log
from .lease import Lease
from .errors import UNSUPPORTED_VOLUME, XenvolError, from_xapi, vanished
from .redact import SCRUB

INTRODUCED = "xenvol-introduced"
PBD_MARK = "xenvol-pbd-"
CONNECTED = "xenvol-connected-"


def ensure_sr(call, driver, config, steps):
    x = call.x
    sr_uuid = driver.sr_uuid(config)
    sr = call.find("SR", sr_uuid)
    fresh = False
    if sr is None:
        sr, fresh = _introduce(call, driver, config, sr_uuid, steps)
        call.uuids[sr] = sr_uuid
    else:
        sr_type = call.do("reading the SR", x.SR.get_type, sr)
        if sr_type != driver.sr_type:
            raise XenvolError(UNSUPPORTED_VOLUME, "SR %s exists with type %s, not %s"
                              % (sr_uuid, sr_type, driver.sr_type), sr_uuid=sr_uuid)
        call.uuids[sr] = sr_uuid
    # Held until the call ends, so that no release on another host forgets the SR between
    # here and the VBD or connect mark that will make it in use.
    call.hold(Lease(call, sr).acquire())
    hosts = [call.host]
    if driver.shared:
        # xapi runs SR.scan of a shared SR on the pool master: its PBD must be plugged too.
        master = x.pool.get_master(x.pool.get_all()[0])
        if master != call.host:
            hosts.append(master)
        if config.get("placement") == "pool":
            # Pool-wide placement: every host a VM may run on (integrate.reconcile adds
            # hosts that join or come back later).
            from .integrate import PLACEMENT, pool_hosts
            hosts += [h for h in pool_hosts(call) if h not in hosts]
            if x.SR.get_other_config(sr).get(PLACEMENT) != "pool":
                call.do("marking the SR pool-wide", x.SR.add_to_other_config, sr, PLACEMENT,
                        "pool")
    for host in hosts:
        # An SR this call introduced has no PBD yet.
        pbd = None if fresh else call.host_pbd(sr, host)
        created = pbd is None
        if created:
            pbd = _create_pbd(call, driver, config, sr, host, steps)
        if created or not call.do("reading the PBD", x.PBD.get_currently_attached, pbd):
            with steps.change("plug PBD of SR %s" % sr_uuid, "unplug_pbd", sr_uuid=sr_uuid,
                              host=host):
                call.do("plugging the SR", x.PBD.plug, pbd)
    return sr


def _introduce(call, driver, config, sr_uuid, steps):
    x = call.x
    # Undone by forgetting the SR unless another call has started using it (gave it PBDs).
    steps.will("introduce SR %s" % sr_uuid, "forget_sr", sr_uuid=sr_uuid)
    try:
        sr = x.SR.introduce(sr_uuid, driver.sr_label(config), driver.sr_description(config),
                            driver.sr_type, driver.content_type, driver.shared,
                            driver.sm_config(config))
    except XenAPI.Failure as f:
        steps.finished()
        if f.details[0] != "SR_UUID_EXISTS":
            raise from_xapi(f, "introducing SR %s" % sr_uuid)
        # Another call (here or on another host) introduced it first: use theirs.
        log.step("SR introduced concurrently; using it", sr_uuid=sr_uuid)
        return call.do("looking up SR", x.SR.get_by_uuid, sr_uuid), False
    call.do("marking the SR", x.SR.add_to_other_config, sr, INTRODUCED, "true")
    return sr, True


def _create_pbd(call, driver, config, sr, host, steps):
    x = call.x
    dconf = driver.device_config(config)
    temporary = []
    for key in sorted(dconf):
        if key.endswith("password"):
            # The password becomes a secret; xapi copies it into the PBD's own secret.
            SCRUB.remember(dconf[key])
            # Tagged with the operation, so that a recovery finds it even when the plugin
            # died before it knew the secret's ref.
            with steps.change("create a temporary secret", "destroy_op_secrets",
                              op_id=call.op_id):
                ref = call.do("creating a secret", x.secret.create, {
                    "value": dconf.pop(key),
                    "other_config": {"xenvol": "plugin", "xenvol-op": call.op_id,
                                     "xenvol-host": call.host_uuid}})
            temporary.append(ref)
            dconf[key + "_secret"] = call.do("reading the secret", x.secret.get_uuid, ref)
    log.step("creating PBD", device_config=dconf)
    steps.will("create PBD", "destroy_pbd", sr_uuid=driver.sr_uuid(config), host=host)
    try:
        pbd = x.PBD.create({"host": host, "SR": sr, "device_config": dconf, "other_config": {}})
    except XenAPI.Failure as f:
        steps.finished()
        if f.details[0] != "PBD_EXISTS":
            raise from_xapi(f, "creating the PBD")
        pbd = f.details[3]
    else:
        mark = PBD_MARK + (call.host_uuid if host == call.host else
                           call.do("reading the host", x.host.get_uuid, host))
        call.do("marking the SR", x.SR.add_to_other_config, sr, mark, "true")
    for ref in temporary:
        call.do("destroying a temporary secret", x.secret.destroy, ref)
    return pbd


def remove_mark(call, sr, key):
    try:
        call.x.SR.remove_from_other_config(sr, key)
    except XenAPI.Failure:
        pass


def users(call, sr):
    """What holds an SR: VBDs on its VDIs, and connect_volume claims."""
    x = call.x
    held = []
    # One filtered read, not a record per VDI.
    for vdi, rec in sorted(x.VDI.get_all_records_where('field "SR" = "%s"' % sr).items()):
        if rec["VBDs"]:
            held.append(("vbd", rec["uuid"]))
        if any(k.startswith(CONNECTED) for k in rec["other_config"]):
            held.append(("connect", rec["uuid"]))
    return held


def release_sr(call, sr):
    """Forget the SR (or drop this host's PBD) if xenvol made it and nothing uses it.

    Returns a note saying what was done. Runs under the SR's dom0 lock and its pool lease;
    a release on another host may have forgotten the SR first."""
    try:
        lease = Lease(call, sr).acquire()
    except (XenAPI.Failure, XenvolError) as e:
        if vanished(e):
            return "SR already gone"
        raise
    try:
        return _release(call, sr)
    except (XenAPI.Failure, XenvolError) as e:
        if vanished(e):
            return "SR already gone"
        raise
    finally:
        lease.release()


def _release(call, sr):
    x = call.x
    other = x.SR.get_other_config(sr)
    sr_uuid = call.uuids.get(sr) or x.SR.get_uuid(sr)
    held = users(call, sr)
    if held:
        log.step("SR still in use; keeping it", sr_uuid=sr_uuid, users=len(held))
        return "SR kept: still in use by %d volume(s)" % len(held)
    if other.get(INTRODUCED) == "true":
        pbds = x.PBD.get_all_records_where('field "SR" = "%s"' % sr)
        for pbd, rec in sorted(pbds.items()):
            if rec["currently_attached"]:
                log.step("unplugging PBD", sr_uuid=sr_uuid)
                call.do("unplugging the SR", x.PBD.unplug, pbd)
        log.step("forgetting SR", sr_uuid=sr_uuid)
        call.do("forgetting the SR", x.SR.forget, sr)
        return "SR forgotten"
    mark = PBD_MARK + call.host_uuid
    pbd = call.this_host_pbd(sr)
    if other.get(mark) == "true" and pbd is not None:
        log.step("removing this host's PBD of a foreign SR", sr_uuid=sr_uuid)
        if x.PBD.get_currently_attached(pbd):
            call.do("unplugging the SR", x.PBD.unplug, pbd)
        call.do("destroying the PBD", x.PBD.destroy, pbd)
        remove_mark(call, sr, mark)
        return "PBD removed; SR was not introduced by xenvol"
    return "SR kept: not introduced by xenvol"
