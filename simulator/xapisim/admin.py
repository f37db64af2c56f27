"""The test controls (Controls: faults, latency, kills, call counts) and the admin API that
sets and reads them (method names `xapisim.<name>`, no session), with inspection.

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
clock_offset(host_uuid, seconds)           the host's clock that far ahead (negative: behind)
sm_unregister(type)                        the SM driver of that SR type gone (record and driver)
update_upload(iso_path[, sr_uuid]) -> uuid what `xe update-upload` does (signature checked)
update_precheck(uuid, host_uuid) -> "ok"   what `xe update-precheck` does (space, version gate)
update_apply(uuid, host_uuid)              what `xe update-apply` does (RPMs into the host root)
update_hosts(uuid) -> [host uuid]          the hosts it is applied on
update_pool_clean(uuid)
update_destroy(uuid)
"""

import collections
import threading
from typing import Counter, Dict, Tuple

from .errors import XapiError


class Controls:
    """Test controls: injected failures, latency, call counts, plugin argv log.

    Faults and latencies name a message (or "*" for latency) and a caller: "client" (TCP),
    "plugin" (a host's unix socket) or "any". A rule on `VBD.plug` also applies to
    `Async.VBD.plug`; one on `Async.VBD.plug` only to the Async form."""

    CALLERS = ("any", "client", "plugin")

    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        self.latency = {}
        self.counts: Counter[Tuple[str, str]] = collections.Counter()
        self.plugin_argv = []
        self.kills = []

    def add_fault(self, method, error, nth=1, every=False, caller="any"):
        self._check_caller(caller)
        with self.lock:
            self.faults.append(
                {
                    "method": method,
                    "error": [str(e) for e in error],
                    "nth": int(nth),
                    "every": bool(every),
                    "caller": caller,
                    "seen": 0,
                }
            )

    def set_latency(self, method, seconds, caller="any"):
        self._check_caller(caller)
        with self.lock:
            self.latency[(method, caller)] = float(seconds)

    def _check_caller(self, caller):
        if caller not in self.CALLERS:
            raise XapiError("INVALID_VALUE", "caller", caller)

    def add_kill(self, method, nth=1, when="before", host=None, pid=None):
        """Test-only: SIGKILL the plugin process that makes its nth call of `method` ("*":
        any call), before that call runs or after it ran (before its answer). host: only
        plugins of that host (uuid); pid: kill this process instead (a client under test)."""
        if when not in ("before", "after"):
            raise XapiError("INVALID_VALUE", "when", when)
        with self.lock:
            self.kills.append(
                {
                    "method": method,
                    "nth": int(nth),
                    "when": when,
                    "host": host,
                    "pid": pid,
                    "seen": 0,
                }
            )

    def kill_for(self, names, host_uuid, when):
        """The kill rule this plugin call fires (counted once, at `before`), or None."""
        with self.lock:
            for rule in self.kills:
                if (rule["method"] != "*" and rule["method"] not in names) or rule["host"] not in (
                    None,
                    host_uuid,
                ):
                    continue
                if when == "before":
                    rule["seen"] += 1
                if rule["seen"] == rule["nth"] and rule["when"] == when and not rule.get("fired"):
                    rule["fired"] = True
                    return rule
            return None

    def clear(self):
        with self.lock:
            self.kills = []
            self.faults = []
            self.latency = {}
            self.counts.clear()
            self.plugin_argv = []

    def on_call(self, method, caller, names=None):
        """Count the call; return (delay, error-or-None) for it. names: every name a rule
        may use for this call (the wire name and, for Async., the message's own)."""
        names = names or (method,)
        with self.lock:
            self.counts[(method, caller)] += 1
            delay = 0.0
            for key in [(n, c) for n in names + ("*",) for c in (caller, "any")]:
                if key in self.latency:
                    delay = self.latency[key]
                    break
            for rule in self.faults:
                if rule["method"] not in names or rule["caller"] not in ("any", caller):
                    continue
                rule["seen"] += 1
                if rule["every"] or rule["seen"] == rule["nth"]:
                    return delay, XapiError(*rule["error"])
            return delay, None

    def count_table(self):
        with self.lock:
            out: Dict[str, Dict[str, int]] = {}
            for (method, caller), n in self.counts.items():
                out.setdefault(method, {})[caller] = n
            return out


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
        from .handlers import Context

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
    if name == "clock_offset":
        sim.host_by_uuid(params[0]).clock_offset = float(params[1])
        return ""
    if name == "sm_unregister":
        sim.unregister_sm(params[0])
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
