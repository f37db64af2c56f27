"""Which host a call goes to. A VM's call is sent with no lookup: to the host this client
last saw the VM's work on, else the pool master, with route=strict; a plugin that finds the
VM's work elsewhere answers WRONG_HOST naming the host, and the call goes there. The master's
host ref is looked up once per process and pool URL, and kept on disk (hostcache.py) for the
next process. Hosts and VMs given by the caller for other calls are resolved here."""

import re
from typing import Any, Dict, List, Optional

import XenAPI

from . import errors
from .errors import Scrubber
from .hostcache import HostCache
from .plugin import Plugin, WrongHost
from .session import PoolSession
from .tasks import Args

NULL = "OpaqueRef:NULL"
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# pool URL -> the master's host ref, shared by the clients of one process.
_MASTERS: Dict[str, str] = {}

# Op ids remembered with the host they were sent to, per client (the oldest forgotten first).
MAX_SENT = 4096

# The VM's host as its plugin last answered: {host_ref, vm_ref, vm_running}.
Route = Dict[str, Any]


class Router:
    def __init__(self, ps: PoolSession, plugin: Plugin, cache: Optional[HostCache]) -> None:
        self.ps = ps
        self.plugin = plugin
        self.cache = cache if ps.url else None
        self.routes: Dict[str, Route] = {}  # VM uuid or name -> its last route
        # op id -> the host its call was last sent to (not sent on from): a retry goes there
        # first, since a plugin keeps a finished call's result on its own host only.
        self.sent: Dict[str, str] = {}
        self._master_host: Optional[str] = None

    # ------------------------------------------------------------------ lookups
    def vm(self, vm: object) -> str:
        """A VM by uuid or name label (ambiguous names are an error)."""
        if not isinstance(vm, str) or not vm:
            raise errors.InvalidArgument(
                "vm: give a VM uuid or name label", details={"field": "vm"}
            )
        x = self.ps.x
        if UUID.match(vm):
            try:
                return str(x.VM.get_by_uuid(vm))
            except XenAPI.Failure as f:
                if f.details[0] != "UUID_INVALID":
                    raise errors.from_failure(f.details) from None
        refs = [
            r
            for r in self.ps.call(x.VM.get_by_name_label, vm)
            if not x.VM.get_is_a_template(r) and not x.VM.get_is_control_domain(r)
        ]
        if not refs:
            raise errors.VMNotFound("vm: no VM named or numbered %r" % vm, details={"field": "vm"})
        if len(refs) > 1:
            raise errors.InvalidArgument(
                "vm: %d VMs are named %r; give its uuid" % (len(refs), vm), details={"field": "vm"}
            )
        return str(refs[0])

    def host(self, host: Optional[str]) -> str:
        """A host by uuid or name label."""
        x = self.ps.x
        if UUID.match(host or ""):
            try:
                return str(x.host.get_by_uuid(host))
            except XenAPI.Failure:
                pass
        refs = self.ps.call(x.host.get_by_name_label, host or "")
        if len(refs) != 1:
            raise errors.HostNotFound("host: no single host %r" % host, details={"field": "host"})
        return str(refs[0])

    def hosts(self) -> List[str]:
        return list(self.ps.call(self.ps.x.host.get_all))

    def master(self) -> str:
        """The pool's master now (two calls; see master_ref for VM calls)."""
        x = self.ps.x
        return str(self.ps.call(x.pool.get_master, self.ps.call(x.pool.get_all)[0]))

    def host_for_vm(self, vm_ref: str) -> str:
        """Where work for a VM runs: where it runs, else where it would start, else the master."""
        rec = self.ps.call(self.ps.x.VM.get_record, vm_ref)
        if rec["power_state"] in ("Running", "Paused") and rec["resident_on"] != NULL:
            return str(rec["resident_on"])
        if rec["affinity"] != NULL and rec["affinity"] in self.hosts():
            return str(rec["affinity"])
        return self.master()

    # ------------------------------------------------------------------ VM calls
    def master_ref(self) -> str:
        """The master, where this session was made: in this process, on disk, else one call
        (a host's ref lasts as long as the host's database record)."""
        if self._master_host is None:
            url = self.ps.url
            ref = _MASTERS.get(url) if url else None
            if ref is None and url and self.cache:
                ref = self.cache.get(url)
            if ref is None:
                ref = str(self.ps.call(self.ps.x.session.get_this_host, self.ps.handle))
                if url and self.cache:
                    self.cache.put(url, ref)
            if url:
                _MASTERS[url] = ref
            self._master_host = ref
        return self._master_host

    def forget_master(self) -> None:
        url = self.ps.url
        if url:
            _MASTERS.pop(url, None)
            if self.cache:
                self.cache.drop(url)
        self._master_host = None

    def vm_call(self, vm: str, fn: str, args: Args, scrub: Optional[Scrubber] = None) -> Any:
        """A call about a VM (uuid or name, resolved in dom0), sent with no lookup: to the
        host this client last saw the VM's work on, else the master, with route=strict. A
        plugin that finds the VM's work elsewhere answers WRONG_HOST naming the host, and the
        call goes there (a second hop only if the VM migrated meanwhile). A remembered host
        that is offline (HOST_OFFLINE) is dropped and the master asked; a host the plugin
        names that is offline is the caller's errors.HostOffline."""
        route = self.routes.get(vm)
        remembered = route is not None  # from an earlier call, not from this one's plugin
        args = dict(args, route="strict")
        op_id = args.get("op_id", "")
        # A retry of an op id goes first to the host that has (or runs) its call, even if the
        # VM moved since: there it is answered, or refused as a conflict, never run twice
        # unseen; a host that never ran it answers WRONG_HOST, and the call goes on from there.
        pinned = self.sent.get(op_id)
        for hop in range(3):
            at_pin = bool(pinned)
            if pinned:
                host_ref, vm_ref = pinned, None
            else:
                host_ref = route["host_ref"] if route else self.master_ref()
                vm_ref = route["vm_ref"] if route and route.get("vm_running") else None
            pinned = None
            self._sent(op_id, host_ref)
            try:
                out = self.plugin.call(host_ref, fn, args, scrub, vm_ref)
            except errors.HostOffline:
                if at_pin:
                    # The host that ran the op id is down: its kept result is out of reach.
                    # The VM's host answers from the pool's state (the VBD's xenvol-op).
                    self.sent.pop(op_id, None)
                    continue
                if not remembered:
                    raise  # the master, or its plugin's answer, named it: the VM's host
                # A remembered host that is not live (the VM may have been restarted
                # elsewhere): the master's plugin says where the VM's work runs now.
                self.routes.pop(vm, None)
                route, remembered = None, False
                continue
            except errors.XenvolError as e:
                if e.code != "HANDLE_INVALID" or hop:
                    raise
                # A remembered host or VM that is gone (a host left the pool, or another pool
                # answers at this URL now): ask afresh.
                self.routes.pop(vm, None)
                self.sent.pop(op_id, None)
                self.forget_master()
                route = None
                continue
            except WrongHost as e:
                remembered = False
                route = {
                    "host_ref": e.details.get("host_ref"),
                    "vm_ref": e.details.get("vm_ref"),
                    "vm_running": False,
                }
                self.plugin.host_uuids[route["host_ref"]] = e.details.get("host_uuid")
                self.routes[vm] = route
                continue
            if isinstance(out, dict) and isinstance(out.get("route"), dict):
                self.routes[vm] = out.pop("route")
                if out.get("vm_uuid"):
                    self.routes[out["vm_uuid"]] = self.routes[vm]
            return out
        raise errors.XenvolError(
            "%s: the VM's host kept changing; try again" % fn, "XENVOL_BUSY", {"vm": vm}
        )

    def _sent(self, op_id: str, host_ref: str) -> None:
        if not op_id:
            return
        # Each step one dict operation: threads sharing the client may call at once.
        self.sent.pop(op_id, None)
        self.sent[op_id] = host_ref
        for old in list(self.sent)[: max(0, len(self.sent) - MAX_SENT)]:
            self.sent.pop(old, None)
