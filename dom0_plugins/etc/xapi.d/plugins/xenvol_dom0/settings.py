"""Operator tuning from /etc/xenvol/xenvol.conf (JSON), with the defaults below."""

import json

from . import paths

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict  # noqa: F401

DEFAULTS = {
    # Seconds to wait before each extra SR.scan when a LUN is not visible yet.
    "lun_rescan_delays": [1, 2, 4, 8],
    # VBD.unplug attempts on DEVICE_DETACH_REJECTED (guest still using the disk).
    "unplug_attempts": 10,
    "unplug_retry_delay": 1.0,
    # How long one call waits in all for others holding the same SR or VM (the one setting
    # that governs waits; clients wait longer, see wait_limit).
    "lock_timeout": 120,
    # A pool-wide SR lease in no known form (not naming its operation) is broken after this.
    # Leases naming a dead operation are broken at once.
    "lease_stale_after": 900,
    # Log lines also go to this syslog socket when it exists ("" for none).
    "syslog_socket": "/dev/log",
    # Policy (policy.py, docs/plugin-api.md "Policy"). Existing SRs xenvol did not introduce
    # that volumes may use, by uuid or by SM type (local types only by uuid or type named here).
    "allowed_sr_uuids": [],
    "allowed_sr_types": [],
    # Attach volumes Cinder marks encrypted as they are (the guest sees LUKS ciphertext).
    "allow_encrypted": False,
    # The only directories the file driver serves volumes from.
    "file_roots": ["/var/lib/xenvol/volumes"],
    # Where a shared SR gets PBDs: "host" (the VM's host and the master) or "pool" (every
    # enabled, live host, so that migrate, evacuate and HA restarts find it plugged); a call's
    # `placement` argument overrides it.
    "placement": "host",
    # Put before a volume's VDI name: Xen Orchestra leaves [NOBAK] disks out of backups and
    # [NOSNAP] disks out of snapshots (raw LUNs cannot be snapshotted by XAPI anyway).
    "vdi_name_tags": ["[NOBAK]", "[NOSNAP]"],
}


def wait_limit(settings):
    # type: (Dict[str, Any]) -> int
    """The longest a call can spend waiting (locks, rescans, guest unplug retries), which
    version() reports: a client waits longer than this before it calls an outcome unknown."""
    return int(
        float(settings["lock_timeout"])
        + sum(float(d) for d in settings["lun_rescan_delays"])
        + int(settings["unplug_attempts"]) * float(settings["unplug_retry_delay"])
    )


def load():
    # type: () -> Dict[str, Any]
    settings = dict(DEFAULTS)
    try:
        with open(paths.config_file()) as fh:
            settings.update(json.load(fh))
    except (OSError, ValueError):
        pass
    return settings
