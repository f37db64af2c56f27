"""The driver interface. A driver turns connection_info["data"] into an SR and a VDI.

Subclass Driver, name the driver_volume_type values it handles in `volume_types`, and
implement validate() (data -> Config, errors naming the field), sr_uuid(), device_config()
and find_vdi(). The framework does the rest: SR introduce with race handling, PBD create
and plug with secrets, locking, rollback and release. Override connect_volume /
disconnect_volume / rollback only when a backend needs steps of its own. See
docs/writing-a-driver.md."""

import binascii
import hashlib
import time

from .. import log, luns, paths, storage
from ..errors import VDI_NOT_FOUND, XenvolError

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple  # noqa: F401


class Connected(tuple):
    """What connect_volume returns: (SR ref, VDI ref), as it always did (an override may unpack
    it), and `standing`, what storage.in_use checks once the call's VBD or claim exists."""

    standing = None  # type: Optional[storage.Standing]

    def __new__(cls, sr, vdi, standing):
        self = tuple.__new__(cls, (sr, vdi))
        self.standing = standing
        return self


# nova's namespace for iSCSI SR uuids, uuid5(UUID(int=0), "volume_utils-SR_UUID"): using it
# keeps SRs that nova introduced recognisable as the same SR.
SR_NAMESPACE = binascii.unhexlify("3cca4135a8095bb3af62275fbfe87178")


def name_uuid(name):
    """uuid.uuid5(SR_NAMESPACE, name) (RFC 4122 §4.3, SHA-1) without the uuid module, whose
    import on Python 3.6 loads ctypes and runs ldconfig: a third of a cold start."""
    digest = bytearray(hashlib.sha1(SR_NAMESPACE + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = binascii.hexlify(bytes(digest)).decode("ascii")
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class Config(dict):
    """A validated volume description: a dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Driver:
    volume_types = ()  # type: Tuple[str, ...]
    sr_type = None  # type: Optional[str]
    shared = True
    content_type = ""

    def validate(self, data):
        """Check connection_info["data"] (a checks.Fields) and return a Config."""
        raise NotImplementedError

    def refuse_unsupported(self, data):
        """Before any field is judged, secrets included: refuse (XENVOL_UNSUPPORTED_VOLUME)
        a volume this driver's SR cannot serve at all, such as a format it cannot open."""

    def sr_uuid(self, config):
        raise NotImplementedError

    def sr_label(self, config):
        return config.get("name_label") or "xenvol %s %s" % (self.sr_type, self.sr_uuid(config)[:8])

    def sr_description(self, config):
        return config.get("name_description") or "Introduced by xenvol"

    def sm_config(self, config):
        return {}

    def device_config(self, config):
        """PBD device_config. Keys ending in `password` are turned into XAPI secrets by the
        framework; keys ending in `password_secret` hold the uuid of an existing secret."""
        raise NotImplementedError

    def find_vdi(self, call, sr, config):
        """The VDI of the volume in an attached SR (scan as needed), or XENVOL_VDI_NOT_FOUND."""
        raise NotImplementedError

    def locate_vdi(self, call, sr, config):
        """The VDI if its record exists, without touching storage (for disconnect)."""
        return None

    def read_only(self, config):
        return bool(config.get("read_only"))

    def check_sr(self, call, sr, pbds, config):
        """Before anything changes, with the SR's PBD records ({ref: record}, read once):
        refuse a volume this existing SR cannot serve as given."""

    def connector_properties(self):
        """What this host presents to arrays of this transport, for the `connector` function
        (os-brick's get_connector_properties of one connector): {} when nothing."""
        return {}

    # ------------------------------------------------------------------ lifecycle
    def connect_volume(self, call, config, steps):
        """Make the volume's VDI usable on this host; every change goes into `steps`. Returns
        a Connected: an override returns what this returns."""
        standing = storage.ensure_sr(call, self, config, steps)
        vdi = self.find_vdi(call, standing.sr, config)
        return Connected(standing.sr, luns.claim_lun(call, standing.sr, vdi, steps), standing)

    def disconnect_volume(self, call, sr):
        """Undo connect_volume once nothing uses the SR any more."""
        return storage.release_sr(call, sr)

    def rollback(self, call, steps):
        """Undo a partial connect from its record of steps."""
        return steps.rollback()


def vdi_by_uuid_with_scan(call, sr, uuid, field):
    """File-backed SRs: the VDI appears after a scan of the SR."""
    for attempt in range(2):
        # One filtered read whatever the SR holds (uuid checked as a uuid by the driver).
        found = call.do(
            "looking up the VDI",
            call.x.VDI.get_all_records_where,
            'field "uuid" = "%s" and field "SR" = "%s"' % (uuid, sr),
        )
        if found:
            vdi, rec = sorted(found.items())[0]
            call.records[vdi] = rec
            return vdi
        if attempt == 0:
            log.step("scanning SR for VDI", vdi_uuid=uuid)
            call.do("scanning the SR", call.x.SR.scan, sr)
    raise XenvolError(
        VDI_NOT_FOUND,
        "%s: no VDI %s in SR %s" % (field, uuid, call.x.SR.get_uuid(sr)),
        field=field,
        vdi_uuid=uuid,
    )


def vdi_by_sm_config(call, sr, key, value):
    """The VDI of a LUN-per-VDI SR whose sm_config[key] is value, or None. An unmanaged one
    is claimed by connect_volume (luns.claim_lun)."""
    for vdi, rec in call.do("reading VDIs", _vdi_records, call, sr):
        if rec["sm_config"].get(key) == value:
            return vdi
    return None


def _vdi_records(call, sr):
    """The SR's VDIs with their records in one filtered read (not a get_record per VDI): the
    calls stay the same whatever the SR holds."""
    found = sorted(call.x.VDI.get_all_records_where('field "SR" = "%s"' % sr).items())
    call.records.update(found)
    return found


def scan(call, sr, doing, attempt):
    """SR.scan, shared by the calls of this host: one scan serves every call that asked for
    it before the scan began. Scans of one SR wait on its lock; the stamp file holds the SR's
    ref (an SR forgotten and introduced again is another ref, never scanned) with the start
    time of its last scan. A call's first look asks as of its own start (its volume existed
    then), later looks as of now (the volume did not show in a scan already)."""
    import os

    name = "scan-" + (call.uuids.get(sr) or sr.replace(":", "_"))
    stamp = os.path.join(paths.lock_dir(), name)
    asked = call.op.started if attempt == 0 else time.time()
    with call.lock(name):
        try:
            with open(stamp) as fh:
                if fh.read() == sr and os.fstat(fh.fileno()).st_mtime >= asked:
                    log.step("the SR was scanned since this call asked; not again")
                    return
        except OSError:
            pass
        started = time.time()
        call.do(doing, call.x.SR.scan, sr)
        try:
            with open(stamp, "w") as fh:
                fh.write(sr)
            os.utime(stamp, (started, started))
        except OSError:
            pass  # only a lost saving


def wait_for(call, find, what, field):
    """Scan until `find()` returns a VDI, with the operator's backoff schedule."""
    delays = [0] + list(call.settings["lun_rescan_delays"])
    for attempt, delay in enumerate(delays):
        if delay:
            log.step("%s not visible yet; rescanning in %ss" % (what, delay))
            time.sleep(delay)
        vdi = find(attempt)
        if vdi:
            return vdi
    raise XenvolError(
        VDI_NOT_FOUND, "%s: %s not found after %d scans" % (field, what, len(delays)), field=field
    )
