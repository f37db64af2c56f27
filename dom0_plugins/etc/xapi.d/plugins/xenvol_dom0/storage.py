"""SRs and PBDs: bring an SR up on this host, and release it when nothing uses it.

Ownership marks live in SR.other_config (PBD.create ignores other_config): INTRODUCED on an
SR xenvol introduced, PBD_MARK + host uuid for a PBD it made on an SR it did not; a VDI that
connect_volume holds for a host carries CONNECTED + host uuid, a raw LUN xenvol claimed
LUN_CLAIM (marks.py says what each means)."""

import collections
import time

import XenAPI

from . import log, luns
from .errors import (
    UNSUPPORTED_VOLUME,
    XAPI_ERROR,
    XenvolError,
    from_xapi,
    vanished,
)
from .lease import Lease
from .marks import CONNECTED, HOST, INTRODUCED, MADE_BY, OP, PBD_MARK, PLACEMENT
from .redact import SCRUB
from .undo import compensation

FORGOTTEN = "SR forgotten"
# SR.introduce and the INTRODUCED mark are two XAPI calls: how long an unmarked SR with no PBD
# (the state between them; PBDs come only after the mark) is re-read before it counts as
# foreign.
INTRODUCE_WINDOW = 5.0


# What ensure_sr leaves for in_use to check once the call's VBD or connection claim exists:
# the SR, and this host's PBD as the set-up saw it plugged (None: not known).
Standing = collections.namedtuple("Standing", "sr pbd")

# The compensations of an SR's set-up; once the set-up is done, one undo_setup step stands
# for them (a rollback then takes away only what nothing uses).
SETUP_UNDO = ("forget_sr", "destroy_pbd", "unplug_pbd")


def ensure_sr(call, driver, config, steps):
    """The SR, plugged on this host (and wherever else it must be), as a Standing. Its dom0
    lock and its pool-wide lease are held only while it is introduced or PBDs are made or
    plugged, so the calls of one SR run in parallel once it is up. Until the call's VBD or
    connection claim makes the SR in use, a release (here or on another host) may forget it:
    in_use(call, standing) then finds the SR or this host's PBD gone, and the call is rolled
    back and tried again."""
    x = call.x
    sr_uuid = driver.sr_uuid(config)
    with call.lock("sr-" + sr_uuid):
        sr, rec = _find(call, sr_uuid)
        if sr is None:
            sr = _introduce(call, driver, config, sr_uuid, steps)
            if sr is not None:
                rec = {"type": driver.sr_type, "other_config": {INTRODUCED: "true"}}
            else:  # introduced concurrently: theirs
                sr, rec = _find(call, sr_uuid)
                if sr is None:
                    raise XenvolError(
                        XAPI_ERROR,
                        "SR %s was forgotten as it was introduced" % sr_uuid,
                        xapi_error=["HANDLE_INVALID", "SR", sr_uuid],
                    )
            pbds = {}
        else:
            pbds = call.do(
                "reading the SR's PBDs", x.PBD.get_all_records_where, 'field "SR" = "%s"' % sr
            )
        if rec["type"] != driver.sr_type:
            raise XenvolError(
                UNSUPPORTED_VOLUME,
                "SR %s exists with type %s, not %s" % (sr_uuid, rec["type"], driver.sr_type),
                sr_uuid=sr_uuid,
            )
        call.uuids[sr] = sr_uuid
        if pbds:
            driver.check_sr(call, sr, pbds, config)
        hosts = _hosts(call, driver, config)
        by_host = dict((r["host"], (p, r["currently_attached"])) for p, r in pbds.items())
        mark_pool = (
            config.get("placement") == "pool"
            and driver.shared
            and rec["other_config"].get(PLACEMENT) != "pool"
        )
        todo = [h for h in hosts if not by_host.get(h, (None, False))[1]]
        if todo or mark_pool:
            lease = Lease(call, sr).acquire()
            try:
                made = _set_up(call, driver, config, sr, rec, todo, by_host, mark_pool, steps)
                setup = [n for n, _d, undo, _a in steps.done if undo in SETUP_UNDO]
                if setup:
                    steps.replace(
                        setup, "set up SR %s" % sr_uuid, "undo_setup", sr_uuid=sr_uuid, **made
                    )
            except Exception as e:
                # Undone under the lease and the lock, before anyone else may use the SR.
                failed = steps.rollback()
                if failed and isinstance(e, XenvolError):
                    e.details["rollback_incomplete"] = failed
                raise
            finally:
                lease.release()
    return Standing(sr, by_host.get(call.host, (None,))[0])


def _find(call, sr_uuid):
    """(ref, record) of the SR, or (None, None): one filtered read (more only while another
    call is between its SR.introduce and the mark, see settled)."""
    found = call.do(
        "looking up the SR", call.x.SR.get_all_records_where, 'field "uuid" = "%s"' % sr_uuid
    )
    if not found:
        return None, None
    sr, rec = sorted(found.items())[0]
    rec = settled(call, sr, rec)
    return (sr, rec) if rec is not None else (None, None)


def settled(call, sr, rec):
    """The SR's record once no xenvol call is between SR.introduce and its INTRODUCED mark,
    or None if the SR was forgotten meanwhile (that call rolled back). An SR in that window is
    unmarked and has no PBD; it is re-read for up to INTRODUCE_WINDOW seconds, after which an
    SR still in that state counts as it is (not xenvol's). Any other record is returned
    unread."""
    deadline = time.time() + INTRODUCE_WINDOW
    delay = 0.02
    while rec["other_config"].get(INTRODUCED) != "true" and not rec["PBDs"]:
        if time.time() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
        try:
            rec = call.x.SR.get_record(sr)
        except XenAPI.Failure as f:
            if vanished(f):
                return None
            raise from_xapi(f, "reading the SR") from None
    return rec


def _hosts(call, driver, config):
    """The hosts the SR must be plugged on: this one and, for a shared SR, the pool master
    (xapi runs SR.scan of a shared SR there), or every host for pool-wide placement."""
    hosts = [call.host]
    if driver.shared:
        master = call.master()
        if master != call.host:
            hosts.append(master)
        if config.get("placement") == "pool":
            # placement.reconcile adds hosts that join or come back later.
            hosts += [h for h in pool_hosts(call) if h not in hosts]
    return hosts


def pool_hosts(call):
    """Hosts a VM may run on: enabled and live."""
    x = call.x
    out = []
    for host, rec in x.host.get_all_records().items():
        try:
            live = x.host_metrics.get_live(rec["metrics"])
        except XenAPI.Failure:
            live = False
        if rec["enabled"] and live:
            out.append(host)
    return out


def _set_up(call, driver, config, sr, rec, todo, by_host, mark_pool, steps):
    """Under the SR's lease: its PBDs on `todo`, plugged. Returns the arguments of the
    undo_setup step that stands for this set-up: the hosts whose PBD the call made, and
    those whose existing PBD it plugged."""
    x = call.x
    sr_uuid = call.uuids[sr]
    foreign = rec["other_config"].get(INTRODUCED) != "true"
    if mark_pool:
        call.do("marking the SR pool-wide", x.SR.add_to_other_config, sr, PLACEMENT, "pool")
    made, plugged = [], []
    for host in todo:
        pbd = by_host.get(host, (None,))[0]
        if pbd is None:
            mark = None
            if foreign:
                mark = (
                    call.host_uuid
                    if host == call.host
                    else call.do("reading the host", x.host.get_uuid, host)
                )
            pbd = _create_pbd(call, driver, config, sr, host, steps, mark)
            by_host[host] = (pbd, False)
            made.append(host)
        else:
            plugged.append(host)
        with steps.change("plug PBD of SR %s" % sr_uuid, "unplug_pbd", sr_uuid=sr_uuid, host=host):
            call.do("plugging the SR", x.PBD.plug, pbd)
    return {"made": made, "plugged": plugged}


def in_use(call, standing):
    """Called once the call's VBD or connection claim exists (a release from now on sees the
    SR in use), with what ensure_sr left standing: check that no release that began before
    forgot the SR or removed this host's PBD meanwhile. A release holding the SR's lease now
    may have missed the claim, so its end is awaited first. The SR or PBD gone is a vanished
    object: rolled back, tried again."""
    sr, pbd = standing
    rec = Lease(call, sr).wait_free()
    if pbd is not None and pbd not in rec["PBDs"]:
        raise XenvolError(
            XAPI_ERROR,
            "the SR's PBD on this host was removed meanwhile",
            xapi_error=["HANDLE_INVALID", "PBD", pbd],
        )


def _introduce(call, driver, config, sr_uuid, steps):
    x = call.x
    # Undone by forgetting the SR unless another call has started using it (gave it PBDs).
    # The mark goes on an SR that came out of SR.introduce, which returns no other_config.
    steps.will("introduce SR %s" % sr_uuid, "forget_sr", sr_uuid=sr_uuid)
    try:
        sr = x.SR.introduce(
            sr_uuid,
            driver.sr_label(config),
            driver.sr_description(config),
            driver.sr_type,
            driver.content_type,
            driver.shared,
            driver.sm_config(config),
        )
    except XenAPI.Failure as f:
        steps.finished()
        if f.details[0] != "SR_UUID_EXISTS":
            raise from_xapi(f, "introducing SR %s" % sr_uuid) from None
        # Another call (here or on another host) introduced it first: use theirs.
        log.step("SR introduced concurrently; using it", sr_uuid=sr_uuid)
        return None
    call.do("marking the SR", x.SR.add_to_other_config, sr, INTRODUCED, "true")
    return sr


def _create_pbd(call, driver, config, sr, host, steps, mark_uuid):
    x = call.x
    dconf = driver.device_config(config)
    temporary = []
    for key in sorted(dconf):
        if key.endswith("password"):
            # The password becomes a secret; xapi copies it into the PBD's own secret.
            SCRUB.remember(dconf[key])
            # Tagged with the operation, so that a recovery finds it even when the plugin
            # died before it knew the secret's ref.
            with steps.change("create a temporary secret", "destroy_op_secrets", op_id=call.op_id):
                ref = call.do(
                    "creating a secret",
                    x.secret.create,
                    {
                        "value": dconf.pop(key),
                        "other_config": {
                            MADE_BY: "plugin",
                            OP: call.op_id,
                            HOST: call.host_uuid,
                        },
                    },
                )
            temporary.append(ref)
            dconf[key + "_secret"] = call.do("reading the secret", x.secret.get_uuid, ref)
    log.step("creating PBD", device_config=dconf)
    pbd, created = create_pbd(call, sr, driver.sr_uuid(config), host, dconf, steps)
    if created:
        if mark_uuid:
            # Only on a foreign SR: xenvol forgets an SR it introduced whole, PBDs and all.
            call.do("marking the SR", x.SR.add_to_other_config, sr, PBD_MARK + mark_uuid, "true")
    for ref in temporary:
        call.do("destroying a temporary secret", x.secret.destroy, ref)
    return pbd


def create_pbd(call, sr, sr_uuid, host, dconf, steps):
    """The PBD of `sr` on `host`, journaled as this call's; (its ref, whether this call made
    it). A concurrent call's PBD (PBD_EXISTS, which names it) is used as it is."""
    steps.will("create PBD", "destroy_pbd", sr_uuid=sr_uuid, host=host)
    try:
        pbd = call.x.PBD.create(
            {"host": host, "SR": sr, "device_config": dconf, "other_config": {}}
        )
    except XenAPI.Failure as f:
        steps.finished()
        if f.details[0] != "PBD_EXISTS":
            raise from_xapi(f, "creating the PBD") from None
        return f.details[3], False
    return pbd, True


def remove_mark(call, sr, key):
    try:
        call.x.SR.remove_from_other_config(sr, key)
    except XenAPI.Failure:
        pass


def users(call, sr):
    """What holds an SR: VBDs on its VDIs, and connect_volume claims."""
    return _usage(call, sr)[0]


def _usage(call, sr):
    """(users, the raw LUNs this host's finished calls claimed that nothing uses)."""
    held, idle = [], []
    # One filtered read, not a record per VDI.
    found = call.x.VDI.get_all_records_where('field "SR" = "%s"' % sr)
    for vdi, rec in sorted(found.items()):
        used = False
        if rec["VBDs"]:
            held.append(("vbd", rec["uuid"]))
            used = True
        if any(k.startswith(CONNECTED) for k in rec["other_config"]):
            held.append(("connect", rec["uuid"]))
            used = True
        if not used and rec["managed"] and luns.finished_claim(call, rec):
            idle.append(vdi)
    return held, idle


def release_sr(call, sr):
    """Forget the SR (or drop this host's PBD) if xenvol made it and nothing uses it.

    Returns a note saying what was done. Runs under the SR's pool lease; a release on another
    host may have forgotten the SR first. A connecting call that found the SR up and has no
    VBD or claim yet is not a user: it finds the SR gone (in_use) and tries again."""
    return leased(call, sr, _release)


def undo_setup(call, sr, made, plugged):
    """Undo a set-up (PBDs made or plugged on hosts `made`, `plugged`) once other calls may
    use the SR: under its lease, a release of the SR when nothing uses it; else each of those
    PBDs that nothing on its host needs is destroyed (made) or unplugged (plugged)."""
    return leased(call, sr, lambda c, s: _undo_setup(c, s, made, plugged))


def leased(call, sr, fn):
    """fn(call, sr) under the SR's lease: a release (its users check and what it removes)."""
    try:
        lease = Lease(call, sr).acquire()
    except (XenAPI.Failure, XenvolError) as e:
        if vanished(e):
            return "SR already gone"
        raise
    try:
        note = fn(call, sr)
        if note == FORGOTTEN:
            lease.held = False  # gone with the SR
        return note
    except (XenAPI.Failure, XenvolError) as e:
        if vanished(e):
            return "SR already gone"
        raise
    finally:
        lease.release()


def _release(call, sr):
    x = call.x
    # Ownership marks as this call read them (only this host's calls, under its SR lock,
    # change this host's), else read now.
    rec = call.sr_records.get(sr)
    other = rec["other_config"] if rec else x.SR.get_other_config(sr)
    sr_uuid = call.uuids.get(sr) or x.SR.get_uuid(sr)
    held, idle = _usage(call, sr)
    if held or other.get(INTRODUCED) != "true":
        # The SR stays: the LUNs claimed for volumes detached since go back (a forgotten SR
        # takes its records, and their claims, with it).
        luns.release_idle(call, sr_uuid, idle)
    if held:
        log.step("SR still in use; keeping it", sr_uuid=sr_uuid, users=len(held))
        return "SR kept: still in use by %d volume(s)" % len(held)
    if other.get(INTRODUCED) == "true":
        return _forget(call, sr, sr_uuid)
    mark = PBD_MARK + call.host_uuid
    pbd = call.this_host_pbd(sr) if other.get(mark) == "true" else None
    if pbd is not None:
        log.step("removing this host's PBD of a foreign SR", sr_uuid=sr_uuid)
        if x.PBD.get_currently_attached(pbd):
            call.do("unplugging the SR", x.PBD.unplug, pbd)
        call.do("destroying the PBD", x.PBD.destroy, pbd)
        remove_mark(call, sr, mark)
        return "PBD removed; SR was not introduced by xenvol"
    return "SR kept: not introduced by xenvol"


def _forget(call, sr, sr_uuid):
    x = call.x
    pbds = x.PBD.get_all_records_where('field "SR" = "%s"' % sr)
    for pbd, rec in sorted(pbds.items()):
        if rec["currently_attached"]:
            log.step("unplugging PBD", sr_uuid=sr_uuid)
            try:
                x.PBD.unplug(pbd)
            except XenAPI.Failure as f:
                if f.details[0] != "HOST_OFFLINE":
                    raise from_xapi(f, "unplugging the SR") from None
                # xapi forwards nothing to a host that is not live (message_forwarding.ml
                # check_live) and leaves its PBDs plugged: the SR cannot be forgotten yet.
                host_uuid = x.host.get_uuid(rec["host"])
                log.warning("host %s is offline; keeping SR %s" % (host_uuid, sr_uuid))
                return "SR kept: host %s is offline (its PBD stays plugged)" % host_uuid
    log.step("forgetting SR", sr_uuid=sr_uuid)
    call.do("forgetting the SR", x.SR.forget, sr)
    return FORGOTTEN


def _undo_setup(call, sr, made, plugged):
    x = call.x
    rec = x.SR.get_record(sr)
    held = users(call, sr)
    if not held and rec["other_config"].get(INTRODUCED) == "true":
        return _forget(call, sr, rec["uuid"])
    needed = _hosts_needing(call, sr) if held else set()
    for host in list(made) + list(plugged):
        if host in needed:
            continue
        pbd = call.host_pbd(sr, host)
        if pbd is None:
            continue
        if x.PBD.get_currently_attached(pbd):
            call.do("unplugging the SR", x.PBD.unplug, pbd)
        if host in made:
            call.do("destroying the PBD", x.PBD.destroy, pbd)
            remove_mark(call, sr, PBD_MARK + x.host.get_uuid(host))
    return "set-up undone"


def _hosts_needing(call, sr):
    """The hosts whose PBD of the SR something uses: the master (xapi scans a shared SR
    there), the hosts of the VMs with a VBD of its VDIs (running, starting, or to start
    there: their affinity), the hosts holding a connection claim."""
    x = call.x
    needed = set([call.master()])
    for _vdi, rec in x.VDI.get_all_records_where('field "SR" = "%s"' % sr).items():
        for vbd in rec["VBDs"]:
            vm = x.VM.get_record(x.VBD.get_VM(vbd))
            needed.update([vm["resident_on"], vm["scheduled_to_be_resident_on"], vm["affinity"]])
        for key in rec["other_config"]:
            if key.startswith(CONNECTED):
                host = call.find("host", key[len(CONNECTED) :])
                if host is not None:
                    needed.add(host)
    return needed


# ---------------------------------------------------------------------- compensations
def _gone(f):
    return f.details[0] in ("HANDLE_INVALID", "UUID_INVALID")


@compensation("forget_sr")
def forget_sr(call, sr_uuid):
    """Undo our SR.introduce: forget the SR unless another call has started using it."""
    sr = call.find("SR", sr_uuid)
    if sr is None or call.x.SR.get_PBDs(sr):
        return
    call.x.SR.forget(sr)


@compensation("destroy_pbd")
def destroy_pbd(call, sr_uuid, host):
    sr = call.find("SR", sr_uuid)
    pbd = call.host_pbd(sr, host) if sr is not None else None
    if pbd is None:
        return
    if call.x.PBD.get_currently_attached(pbd):
        call.x.PBD.unplug(pbd)
    call.x.PBD.destroy(pbd)
    remove_mark(call, sr, PBD_MARK + call.x.host.get_uuid(host))


@compensation("unplug_pbd")
def unplug_pbd(call, sr_uuid, host):
    sr = call.find("SR", sr_uuid)
    pbd = call.host_pbd(sr, host) if sr is not None else None
    if pbd is not None and call.x.PBD.get_currently_attached(pbd):
        call.x.PBD.unplug(pbd)


@compensation("destroy_op_secrets")
def destroy_op_secrets(call, op_id):
    """The secrets the plugin made for an operation (tagged with its op id)."""
    for ref, rec in call.x.secret.get_all_records().items():
        other = rec["other_config"]
        if other.get(MADE_BY) == "plugin" and other.get(OP) == op_id:
            try:
                call.x.secret.destroy(ref)
            except XenAPI.Failure as f:
                if not _gone(f):
                    raise


@compensation("remove_claim")
def remove_claim(call, vdi, key):
    """Undo a connection claim (CONNECTED + host uuid on the VDI)."""
    try:
        if key in call.x.VDI.get_other_config(vdi):
            call.x.VDI.remove_from_other_config(vdi, key)
    except XenAPI.Failure as f:
        if not _gone(f):
            raise from_xapi(f, "dropping the connection record") from None


@compensation("release_sr")
def _release_sr_step(call, sr_uuid):
    """Finish a detach or disconnect: release the SR if nothing uses it any more."""
    sr = call.find("SR", sr_uuid)
    if sr is not None:
        release_sr(call, sr)


@compensation("undo_setup")
def _undo_setup_step(call, sr_uuid, made, plugged):
    """Undo an SR's set-up (the PBDs made or plugged on those hosts, by ref) once other calls
    may use the SR: what nothing uses goes (undo_setup)."""
    sr = call.find("SR", sr_uuid)
    if sr is not None:
        undo_setup(call, sr, made, plugged)
