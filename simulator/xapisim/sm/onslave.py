"""sm's `on-slave` host plugin, which every host has (sm scripts/plugins/on-slave,
libs/sm/on_slave.py): answered by the simulator itself rather than exec'd, since what it
touches (the host's SCSI devices) is the simulator's model."""

from ..errors import XapiError

NAME = "on-slave"


def call(sim, host, fn, args):
    if fn == "refresh_lun_size_by_SCSIid":
        # on_slave.refresh_lun_size_by_SCSIid: "True" or "False" from
        # scsiutil.refresh_lun_size_by_SCSIid(args['SCSIid']) (a KeyError without it).
        if "SCSIid" not in args:
            raise XapiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", "", "KeyError: 'SCSIid'")
        return "True" if sim.sm.driver("iscsi").refresh_size(host, args["SCSIid"]) else "False"
    # XenAPIPlugin.dispatch of a name the plugin does not export.
    raise XapiError("UNKNOWN_XENAPI_PLUGIN_FUNCTION", fn)
