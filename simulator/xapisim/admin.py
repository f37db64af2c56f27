"""The admin API (method names `xapisim.<name>`, no session): test controls and inspection.

inject_fault(method, error_list, options)  options: nth (1), every (false),
                                           caller (any|client|plugin)
set_latency(method_or_star, seconds[, caller])  caller: any (default) | client | plugin
kill_plugin(method_or_star, options)       options: nth (1), when (before|after), host (uuid),
                                           pid (kill that process instead); test-only
reboot_host(host_uuid)                     new boot id, the host's plugin processes killed
ha_host_failed(host_uuid) -> {vm uuid: host uuid or ""}  HA's reaction to a host failure
host_live(host_uuid, live)                 host_metrics.live as xapi's liveness check leaves it
                                           (calls forwarded there: HOST_OFFLINE); nothing else
set_guest_agent_delay(seconds)             from a VM's start to its guest metrics (default 0)
clear()                                    faults, kills, latency, counters and argv log
counts()                                   {method: {caller: n}}
snapshot()                                 every persistent object by class and uuid
plugin_argv()                              argv of every plugin run so far
pool()                                     master, hosts (uuid, address, root)
put_vdi(sr_uuid, vdi_uuid, spec)           a VDI in the backing store of an in-memory SR type
remove_vdi(sr_uuid, vdi_uuid)
fc_ports(host_uuid, [wwpn…])              a host's HBA port WWPNs (default: two per host)
fc_lun(target_wwn, lun, scsi_id, size[, [initiator wwpn…]])  a LUN on an array port (masking)
fc_remove_lun(target_wwn, lun)
fc_zone(initiator_wwpn, target_wwn[, false])   zone (or unzone) an initiator with a target
fc_fabric() -> {host uuid: [wwpn…]}        the hosts' WWPNs
update_upload(iso_path[, sr_uuid]) -> uuid what `xe update-upload` does (signature checked)
update_precheck(uuid, host_uuid) -> "ok"   what `xe update-precheck` does (space, version gate)
update_apply(uuid, host_uuid)              what `xe update-apply` does (RPMs into the host root)
update_hosts(uuid) -> [host uuid]          the hosts it is applied on
update_pool_clean(uuid)
update_destroy(uuid)
"""

from .errors import XapiError


def call(sim, name, params):
    c = sim.controls
    if name == "inject_fault":
        method, error = params[0], params[1]
        opts = params[2] if len(params) > 2 else {}
        c.add_fault(
            method,
            error,
            nth=opts.get("nth", 1),
            every=opts.get("every", False),
            caller=opts.get("caller", "any"),
        )
        return ""
    if name == "set_latency":
        c.set_latency(params[0], params[1], params[2] if len(params) > 2 else "any")
        return ""
    if name == "kill_plugin":
        opts = params[1] if len(params) > 1 else {}
        c.add_kill(
            params[0],
            nth=opts.get("nth", 1),
            when=opts.get("when", "before"),
            host=opts.get("host"),
            pid=opts.get("pid"),
        )
        return ""
    if name == "reboot_host":
        sim.reboot(sim.host_by_uuid(params[0]))
        return ""
    if name == "ha_host_failed":
        from . import api_vm
        from .messages import Context

        with sim.db.lock:
            out = api_vm.ha_host_failed(
                Context(sim, None, None, "xapi"), sim.host_by_uuid(params[0]).ref
            )
            return dict(
                (sim.db.raw("VM", vm)["uuid"], sim.db.raw("host", h)["uuid"] if h else "")
                for vm, h in out.items()
            )
    if name == "host_live":
        # xen-api ocaml/xapi/db_gc.ml check_host_liveness: a host whose heartbeat stops is
        # marked not live (host_metrics.live false); its VMs stay as they were recorded.
        with sim.db.lock:
            metrics = sim.db.raw("host", sim.host_by_uuid(params[0]).ref)["metrics"]
            sim.db.raw("host_metrics", metrics)["live"] = bool(params[1])
        return ""
    if name == "set_guest_agent_delay":
        sim.guest_agent_delay = float(params[0])
        return ""
    if name == "clear":
        c.clear()
        return ""
    if name == "counts":
        return c.count_table()
    if name == "snapshot":
        return sim.db.snapshot()
    if name == "plugin_argv":
        with c.lock:
            return [dict(e, time=str(e["time"])) for e in c.plugin_argv]
    if name == "pool":
        return {
            "master": sim.master.uuid,
            "hosts": [
                {
                    "uuid": h.uuid,
                    "address": h.address,
                    "root": h.root,
                    "name": sim.db.raw("host", h.ref)["name_label"],
                }
                for h in sim.hosts
            ],
        }
    if name == "put_vdi":
        with sim.db.lock:
            sim.sm.backing(params[0])[params[1]] = dict(params[2] if len(params) > 2 else {})
        return ""
    if name == "remove_vdi":
        with sim.db.lock:
            sim.sm.backing(params[0]).pop(params[1], None)
        return ""
    if name.startswith("fc_"):
        return _fabric(sim, name, params)
    if name == "update_upload":
        return sim.updates.upload(params[0], params[1] if len(params) > 1 else None)
    if name == "update_precheck":
        return sim.updates.precheck(params[0], sim.host_by_uuid(params[1]))
    if name == "update_apply":
        sim.updates.apply(params[0], sim.host_by_uuid(params[1]))
        return ""
    if name == "update_hosts":
        return sim.updates.hosts(params[0])
    if name == "update_pool_clean":
        sim.updates.pool_clean(params[0])
        return ""
    if name == "update_destroy":
        sim.updates.destroy(params[0])
        return ""
    raise XapiError("MESSAGE_METHOD_UNKNOWN", "xapisim." + name)


def _fabric(sim, name, params):
    fabric = sim.sm.driver("hba").fabric
    try:
        if name == "fc_ports":
            fabric.set_ports(sim.host_by_uuid(params[0]), params[1])
        elif name == "fc_lun":
            fabric.add_lun(
                params[0], params[1], params[2], params[3], params[4] if len(params) > 4 else None
            )
        elif name == "fc_remove_lun":
            fabric.remove_lun(params[0], params[1])
        elif name == "fc_zone":
            fabric.zone(params[0], params[1], params[2] if len(params) > 2 else True)
        elif name == "fc_fabric":
            return dict((h.uuid, fabric.host_ports(h)) for h in sim.hosts)
        else:
            raise XapiError("MESSAGE_METHOD_UNKNOWN", "xapisim." + name)
    except (ValueError, IndexError) as e:
        raise XapiError("INVALID_VALUE", name, str(e)) from None
    return ""
