"""xenvol.Client: the one facade of the client. It marshals connection_info to the right
host's plugin; the work is done by the modules below it (docs/architecture.md):
session (login, TLS), secrets (passwords as XAPI secrets), routing (which host), plugin (one
call, its API level, its errors), tasks (waiting, bounded), records (what calls return)."""

import dataclasses
import functools
import inspect
import json
import logging
import re
import time
import uuid as uuidlib
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar, Union, cast

from . import errors, hostcache, secrets
from .errors import ConnectionFailed, Scrubber
from .hostcache import HostCache
from .plugin import REQUIRED_API, Plugin
from .records import Attachment, Connection
from .routing import NULL, Router
from .session import PoolSession, normalize_url
from .tasks import Args, Progress
from .transport import TRANSPORT_ERRORS
from .trust import load_known_certs

__all__ = ["Attachment", "Client", "Connection", "ConnectionFailed", "REQUIRED_API"]

# Client-made secrets that the plugin never consumed (both sides killed) expire: gc
# destroys them this many seconds past the client's wait after it first saw them.
SECRET_TTL_GRACE = 300

log = logging.getLogger("xenvol")
F = TypeVar("F", bound=Callable[..., Any])


def operation(fn: F) -> F:
    """One call of the API as one operation: its op id (the caller's, else a new one) goes
    to the plugin (the dom0 log names it), to the `xenvol` logger and into the result; a
    transport failure on the way is a ConnectionFailed naming it, as every xenvol error
    does in details["op_id"]."""
    signature = inspect.signature(fn)
    name = fn.__name__

    @functools.wraps(fn)
    def call(self: "Client", *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        op = bound.arguments["op_id"] = _op_id(bound.arguments.get("op_id"))
        log.info("%s: op_id=%s", name, op)
        started = time.monotonic()
        try:
            out = fn(*bound.args, **bound.kwargs)
        except errors.XenvolError as e:
            e.details.setdefault("op_id", op)
            log.warning("%s: op_id=%s failed: %s", name, op, e.message)
            raise
        except TRANSPORT_ERRORS as e:
            log.warning("%s: op_id=%s: transport failure %s", name, op, e)
            raise errors.connection_lost(name, op, None, e) from None
        log.info("%s: op_id=%s done in %.2fs", name, op, time.monotonic() - started)
        # {host uuid: ...} results carry it in each host's entry (the method puts it there).
        return out if name in ("drivers", "versions") else _with_op_id(out, op)

    return cast(F, call)


def _with_op_id(out: Any, op: str) -> Any:
    """The op id in a result: records carry it, dicts get the key, lists each item."""
    if isinstance(out, (Attachment, Connection)):
        return out if out.op_id else dataclasses.replace(out, op_id=op)
    if isinstance(out, dict):
        out.setdefault("op_id", op)
        return out
    if isinstance(out, list):
        return [_with_op_id(o, op) for o in out]
    return out


class Client:
    """Talk to a pool. Build it from a URL and credentials (it follows HOST_IS_SLAVE to the
    master, verifies TLS unless verify_tls=False, and logs out on close()), or from an
    existing XenAPI.Session with Client.from_session(session). A URL without a scheme is
    https:// (`xs1`, `xs1:8443`). A self-signed host certificate is trusted by its SHA-256
    fingerprint: pinned_certs, by default the ones the CLI recorded.

    Threads: one Client may be shared; each thread gets its own connection on the one XAPI
    session (a borrowed session: a copy of it per thread). Calls from several threads run in
    parallel; results and errors go to the thread that made the call. Ctrl-C (SIGINT, in
    the main thread) during a changing call cancels it by its op id and raises
    errors.Cancelled saying what became of it (outcome: rolled back, completed, unknown).
    Every call has an op id (op_id=, else a new one): in its result, in every error's
    details, and in the `xenvol` logger's lines.

    routing: "host" (default: host.call_plugin on the VM's host, known from earlier answers)
    or "native" (VM.call_host_plugin where xapi has it; see plugin.Plugin). progress(step):
    called with the step a long operation is at. host_cache: keep the pool master's host ref
    on disk for the next process (True: $XDG_CACHE_HOME/xenvol/hosts.json unless
    XENVOL_HOST_CACHE=off; a path; False: never)."""

    def __init__(
        self,
        url: Optional[str] = None,
        username: str = "root",
        password: Optional[str] = None,
        verify_tls: bool = True,
        cafile: Optional[str] = None,
        timeout: float = 60.0,
        originator: str = "xenvol",
        pinned_certs: Optional[Mapping[str, str]] = None,
        progress: Optional[Progress] = None,
        routing: str = "host",
        host_cache: Union[bool, str] = True,
    ) -> None:
        if routing not in ("host", "native"):
            raise errors.InvalidArgument("routing: host or native", details={"field": "routing"})
        self.timeout = timeout
        if url is not None:
            # pinned_certs: "host:port" -> SHA-256 of a trusted certificate; None: those the
            # CLI's --trust-fingerprint recorded (~/.config/xenvol/known_certs).
            if pinned_certs is None:
                pinned_certs = load_known_certs()
            self._link = PoolSession.login(
                normalize_url(url),
                username,
                password or "",
                originator,
                timeout,
                verify_tls,
                cafile,
                dict(pinned_certs or {}),
            )
        else:
            self._link = PoolSession()
        self._plugin = Plugin(self._link, routing, progress)
        path = hostcache.default_path() if host_cache is True else host_cache or None
        self._router = Router(self._link, self._plugin, HostCache(path) if path else None)

    @classmethod
    def from_session(cls, session: Any) -> "Client":
        """A client on a borrowed XenAPI.Session: the caller owns it and logs it out."""
        client = cls()
        client._link.session = session
        return client

    # ------------------------------------------------------------------ session
    @property
    def session(self) -> Any:
        """The XenAPI.Session (None once closed)."""
        return self._link.session

    @property
    def url(self) -> Optional[str]:
        """The master's URL this client logged in to (None for a borrowed session)."""
        return self._link.url

    @property
    def x(self) -> Any:
        """session.xenapi."""
        return self._link.x

    @property
    def routing(self) -> str:
        return self._plugin.routing

    @property
    def progress(self) -> Optional[Progress]:
        return self._plugin.progress

    @progress.setter
    def progress(self, value: Optional[Progress]) -> None:
        self._plugin.progress = value

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host_uuid(self, host: str) -> str:
        """A host's uuid, from its uuid or name."""
        return str(self.x.host.get_uuid(self._router.host(host)))

    def host_for_vm(self, vm_ref: str) -> str:
        """Where work for a VM runs: where it runs, else where it would start, else the master."""
        return self._router.host_for_vm(vm_ref)

    def check_version(self, host_ref: str) -> Dict[str, Any]:
        """The plugin's version on a host, checked once per session and host."""
        return self._plugin.check_version(host_ref)

    # ------------------------------------------------------------------ secrets
    def _with_secrets(
        self,
        connection_info: object,
        host_ref: Optional[str],
        fn: str,
        args: Args,
        vm: Optional[str] = None,
    ) -> Any:
        # Tagged, so that the plugin consumes them and gc finds any a kill -9 left: after
        # xenvol-ttl seconds, as gc's own clock measures them from when it first saw them.
        # xenvol-expires (this machine's clock) is for older plugins' gc, which compared it.
        ttl = self._plugin.wait_limit(host_ref) + SECRET_TTL_GRACE
        stashed = secrets.stash(
            self.x,
            connection_info,
            {
                "xenvol": "client",
                "xenvol-op": args["op_id"],
                "xenvol-ttl": "%d" % ttl,
                "xenvol-expires": "%d" % (time.time() + ttl),
            },
        )
        args = dict(args, connection_info=json.dumps(stashed.info))
        try:
            if vm is not None:
                out = self._router.vm_call(vm, fn, args, stashed.scrub)
            else:
                out = self._plugin.call(host_ref, fn, args, stashed.scrub)
        except Exception as e:
            # An outcome unknown (no answer in time, the connection lost, interrupted): the
            # plugin may still use them; they expire, and gc removes them.
            unknown = isinstance(e, (errors.OperationTimedOut, errors.ConnectionFailed)) or (
                isinstance(e, errors.Cancelled) and e.outcome == "unknown"
            )
            if not unknown:
                secrets.drop(self.x, stashed.created)
            raise
        secrets.drop(self.x, stashed.leftover)
        return out

    def _without_secrets(self, connection_info: object) -> Tuple[Dict[str, Any], Scrubber]:
        """connection_info for a call that needs no password: never send one."""
        stashed = secrets.stash(self.x, connection_info)
        secrets.drop(self.x, stashed.created)
        return stashed.info, stashed.scrub

    # ------------------------------------------------------------------ the API
    @operation
    def attach(
        self,
        connection_info: Dict[str, Any],
        vm: str,
        mountpoint: str = "autodetect",
        read_only: Optional[bool] = None,
        hotplug: bool = True,
        op_id: Optional[str] = None,
        placement: Optional[str] = None,
    ) -> Attachment:
        """Attach a volume to a VM (uuid or name); returns an Attachment. op_id: this
        operation's id (default: a new one); the same call with the same op_id returns the
        first one's result (after OperationTimedOut, say). placement: "host" (the SR plugged
        on the VM's host and the master) or "pool" (on every host); default: the hosts'
        xenvol.conf."""
        args = {
            "vm": _vm_arg(vm),
            "mountpoint": str(mountpoint),
            "hotplug": "true" if hotplug else "false",
            "op_id": _op_id(op_id),
        }
        if placement is not None:
            args["placement"] = _placement(placement)
        if read_only is not None:
            args["mode"] = "ro" if read_only else "rw"
        out = self._with_secrets(connection_info, None, "attach_volume", args, vm=args["vm"])
        return Attachment.from_dict(_answer(out, "attach_volume", _ATTACHMENT_KEYS))

    @operation
    def detach(
        self,
        vm: Optional[str] = None,
        mountpoint: Optional[str] = None,
        attachment: Optional[Attachment] = None,
        vdi: Optional[str] = None,
        op_id: Optional[str] = None,
    ) -> List[Attachment]:
        """Detach by VM and mount point, by Attachment, or every xenvol VBD of a VDI uuid.
        Returns the Attachments detached (empty when nothing was attached)."""
        if attachment is not None:
            key, args = str(attachment.vm_uuid), {"vbd_uuid": str(attachment.vbd_uuid)}
        elif vdi is not None:
            # Its VM's host is found in dom0 (WRONG_HOST), not by lookups from here.
            key, args = vdi, {"vdi_uuid": vdi}
        elif vm is not None and mountpoint is not None:
            key = _vm_arg(vm)
            args = {"vm": key, "mountpoint": str(mountpoint)}
        else:
            raise errors.InvalidArgument(
                "detach: give vm and mountpoint, attachment, or vdi",
                details={"field": "mountpoint"},
            )
        args["op_id"] = _op_id(op_id)
        out = _answer(self._router.vm_call(key, "detach_volume", args), "detach_volume", ())
        detached = out.get("detached")
        if not isinstance(detached, list):
            raise _unexpected("detach_volume", out)
        return [Attachment.from_dict(_answer(a, "detach_volume", ("vbd_uuid",))) for a in detached]

    @operation
    def connect(
        self,
        connection_info: Dict[str, Any],
        host: str,
        op_id: Optional[str] = None,
        placement: Optional[str] = None,
    ) -> Connection:
        """Connect a volume to a host (uuid or name) without a VM; returns a Connection."""
        host_ref = self._router.host(host)
        args = {"op_id": _op_id(op_id)}
        if placement is not None:
            args["placement"] = _placement(placement)
        out = self._with_secrets(connection_info, host_ref, "connect_volume", args)
        return Connection.from_dict(_answer(out, "connect_volume", ("sr_uuid", "vdi_uuid")))

    @operation
    def disconnect(
        self,
        connection: Optional[Connection] = None,
        connection_info: Optional[Dict[str, Any]] = None,
        host: Optional[str] = None,
        op_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Undo connect(): give the Connection, or connection_info and the host."""
        out: Dict[str, Any]
        if connection is not None:
            host_ref = self._router.host(connection.host_uuid)
            args = {
                "sr_uuid": str(connection.sr_uuid),
                "vdi_uuid": str(connection.vdi_uuid),
                "op_id": _op_id(op_id),
            }
            out = self._plugin.call(host_ref, "disconnect_volume", args)
            return out
        if connection_info is None or host is None:
            raise errors.InvalidArgument(
                "disconnect: give a Connection, or connection_info and host",
                details={"field": "connection"},
            )
        info, scrub = self._without_secrets(connection_info)
        out = self._plugin.call(
            self._router.host(host),
            "disconnect_volume",
            {"connection_info": json.dumps(info), "op_id": _op_id(op_id)},
            scrub,
        )
        return out

    @operation
    def attachments(
        self,
        vm: Optional[str] = None,
        skipped: Optional[List[errors.PluginError]] = None,
        op_id: Optional[str] = None,
    ) -> List[Attachment]:
        """The volumes xenvol attached, on the VM's host or on every host. With a list as
        `skipped`, a host without a usable plugin is appended to it (as the PluginError) and
        the other hosts are still listed."""
        if vm is not None:
            vm_ref = self._router.vm(vm)
            out = self._plugin.call(
                self._router.host_for_vm(vm_ref),
                "list_attachments",
                {"vm_uuid": self.x.VM.get_uuid(vm_ref), "op_id": _op_id(op_id)},
            )
            found = _answer(out, "list_attachments", ("attachments",))["attachments"]
        else:
            found = []
            for host in self._router.hosts():
                try:
                    out = self._plugin.call(host, "list_attachments", {"op_id": _op_id(op_id)})
                except errors.PluginError as e:
                    if skipped is None:
                        raise
                    skipped.append(e)
                    continue
                found.extend(
                    dict(a, host_uuid=self.x.host.get_uuid(host))
                    for a in _answer(out, "list_attachments", ("attachments",))["attachments"]
                )
        return [Attachment.from_dict(a) for a in found]

    @operation
    def gc(
        self, dry_run: bool = True, pool_only: bool = False, op_id: Optional[str] = None
    ) -> List[Dict[str, Any]]:
        """What xenvol left that nothing uses (dead operations' journals and leases, SRs and
        PBDs it made that nothing uses, orphan secrets, claims of hosts that left): a list
        of items {kind, id, why, action, host_uuid}; removed only with dry_run=False. It
        never touches an object xenvol did not make. pool_only: only the pool-wide objects
        (SRs, PBDs, leases, secrets, claims) and the master's journals, asked of the master
        alone, not every host."""
        items: List[Dict[str, Any]] = []
        master = self._router.master()
        others = [] if pool_only else [h for h in self._router.hosts() if h != master]
        hosts = [master] + others
        for host in hosts:
            args = {
                "apply": "false" if dry_run else "true",
                "pool": "true" if host == master else "false",
                "op_id": _op_id(op_id),
            }
            out = _answer(self._plugin.call(host, "gc", args), "gc", ("host_uuid", "items"))
            items.extend(dict(i, host_uuid=out["host_uuid"]) for i in out["items"])
        return items

    @operation
    def drivers(
        self,
        host: Optional[str] = None,
        skipped: Optional[List[errors.PluginError]] = None,
        op_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        """{host uuid: {"drivers": [...], "failed": [...]}} for one host or all; `skipped` as
        in attachments()."""
        hosts = [self._router.host(host)] if host else self._router.hosts()
        out = {}
        for h in hosts:
            try:
                out[str(self.x.host.get_uuid(h))] = dict(
                    self._plugin.call(h, "list_drivers", {"op_id": _op_id(op_id)}), op_id=op_id
                )
            except errors.PluginError as e:
                if skipped is None:
                    raise
                skipped.append(e)
        return out

    # ------------------------------------------------------------------ integrators
    @operation
    def extend(
        self,
        connection_info: Optional[Dict[str, Any]] = None,
        vdi: Optional[str] = None,
        op_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        """After the backend grew a volume (attached or connected): every host with its SR
        plugged re-reads the size, the VDI's virtual_size follows; returns {old_size,
        new_size, grew, vbds: [{vm_uuid, device, plugged, sees}]}. Give connection_info or
        the VDI's uuid."""
        scrub: Optional[Scrubber] = None
        if connection_info is not None:
            info, scrub = self._without_secrets(connection_info)
            args = {"connection_info": json.dumps(info)}
        elif vdi is not None:
            args = {"vdi_uuid": vdi}
        else:
            raise errors.InvalidArgument(
                "extend: give connection_info or vdi", details={"field": "connection_info"}
            )
        args["op_id"] = _op_id(op_id)
        out: Dict[str, Any] = self._plugin.call(self._router.master(), "extend_volume", args, scrub)
        return out

    @operation
    def connector(
        self,
        vm: Optional[str] = None,
        host: Optional[str] = None,
        placement: str = "host",
        op_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        """What the array must know before Cinder's initialize_connection: for each host a
        volume will be plugged on, its initiator IQN, FC WWPNs/WWNNs and NVMe host NQN where
        it has them, IPs and name. With vm: the hosts an attach to it plugs the SR on (its
        host and the pool master: xapi scans shared SRs on the master), every enabled host
        with placement="pool"; with host: that host; else every host. Returns {"hosts":
        [...], "plug_hosts": [host uuids], "connector": the first host's, os-brick's shape}."""
        router = self._router
        master = router.master()
        if host is not None:
            targets = [router.host(host)]
        elif vm is not None and placement != "pool":
            first = router.host_for_vm(router.vm(vm))
            targets = [first] + ([master] if master != first else [])
        else:
            all_hosts = router.hosts()
            if vm is not None:
                first = router.host_for_vm(router.vm(vm))
                all_hosts = [first] + [h for h in all_hosts if h != first]
            targets = (
                [h for h in all_hosts if self._link.call(self.x.host.get_enabled, h)]
                if vm is not None
                else all_hosts
            )
        hosts = [
            _answer(
                self._plugin.call(h, "connector", {"op_id": _op_id(op_id)}),
                "connector",
                ("host_uuid",),
            )
            for h in targets
        ]
        return {
            "hosts": hosts,
            "plug_hosts": [h["host_uuid"] for h in hosts],
            "connector": dict(hosts[0]) if hosts else {},
        }

    @operation
    def migrate(
        self, vm: str, host: str, live: bool = True, op_id: Optional[str] = None
    ) -> Dict[str, Any]:
        """Move a running VM with xenvol disks to another host of the pool: the disks' SRs
        are plugged on the destination first, then VM.pool_migrate, then the source's PBDs
        that nothing there needs are released. On failure the destination is released again
        and the error raised. Returns {vm_uuid, source, destination, prepared, released}."""
        call, x = self._link.call, self.x
        vm_ref = self._router.vm(vm)
        dest = self._router.host(host)
        vm_uuid = call(x.VM.get_uuid, vm_ref)
        source = call(x.VM.get_resident_on, vm_ref)
        op = _op_id(op_id)
        prepared = _answer(
            self._plugin.call(dest, "prepare_host", {"vm_uuid": vm_uuid, "op_id": op}),
            "prepare_host",
            ("host_uuid", "sr_uuids"),
        )
        try:
            call(x.VM.pool_migrate, vm_ref, dest, {"live": "true" if live else "false"})
        except BaseException:
            try:
                self._plugin.call(dest, "release_host", {"vm_uuid": vm_uuid, "op_id": _op_id(None)})
            except errors.XenvolError:
                pass  # gc finds what is left
            raise
        released = []
        if source not in (NULL, dest):
            released = _answer(
                self._plugin.call(
                    source, "release_host", {"vm_uuid": vm_uuid, "op_id": _op_id(None)}
                ),
                "release_host",
                ("released",),
            )["released"]
        return {
            "vm_uuid": vm_uuid,
            "source": call(x.host.get_uuid, source) if source != NULL else "",
            "destination": prepared["host_uuid"],
            "prepared": prepared["sr_uuids"],
            "released": released,
        }

    @operation
    def reconcile(self, apply: bool = False, op_id: Optional[str] = None) -> List[Dict[str, Any]]:
        """Pool-wide placement kept up to date: PBDs on every enabled, live host for the SRs
        attached with placement="pool" (hosts that joined or came back). Returns the items
        found (made with apply=True)."""
        out = _answer(
            self._plugin.call(
                self._router.master(),
                "reconcile",
                {"apply": "true" if apply else "false", "op_id": _op_id(op_id)},
            ),
            "reconcile",
            ("items",),
        )
        items: List[Dict[str, Any]] = out["items"]
        return items

    @operation
    def versions(self, op_id: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        """{host uuid: version info, or the error text} for every host (each with the op
        id of this call)."""
        out = {}
        for h in self._router.hosts():
            uuid = str(self.x.host.get_uuid(h))
            try:
                out[uuid] = dict(self._plugin.check_version(h), op_id=op_id)
            except errors.XenvolError as e:
                out[uuid] = {"error": e.message, "code": e.code or type(e).__name__, "op_id": op_id}
        return out

    def probe(self, host: str, pool: bool = False) -> Dict[str, Any]:
        """What `xenvol check` reads of a host's dom0 (its plugin's read-only `probe`):
        dom0's Python and packages, xenvol.conf, the journal and results directories, what
        gc and recover would report (pool=True: the pool-wide leftovers too), the initiator
        name file, FC ports, file_roots."""
        out: Dict[str, Any] = self._plugin.call(
            self._router.host(host), "probe", {"pool": "true" if pool else "false"}
        )
        return out

    def scratch_volume(self, host: str, action: str, volume: str) -> Dict[str, Any]:
        """`xenvol check --smoke`'s scratch file volume on a host (its plugin's
        `smoke_volume`): action "create" (a sparse file under a file_roots directory;
        returns its `path`) or "remove"."""
        out: Dict[str, Any] = self._plugin.call(
            self._router.host(host), "smoke_volume", {"action": action, "volume": volume}
        )
        return out


# What every attach answer carries.
_ATTACHMENT_KEYS = ("sr_uuid", "vdi_uuid", "vbd_uuid", "vm_uuid", "userdevice")


def _answer(out: Any, fn: str, keys: Tuple[str, ...]) -> Dict[str, Any]:
    """A plugin answer of the shape fn returns (a dict with keys); anything else is the
    plugin's fault, said as a xenvol error, never a KeyError or TypeError."""
    if not isinstance(out, dict) or any(k not in out for k in keys):
        raise _unexpected(fn, out)
    return out


def _unexpected(fn: str, out: Any) -> errors.PluginIncompatible:
    return errors.PluginIncompatible(
        "the xenvol plugin answered %s with something it never returns (%s); "
        "upgrade it (%s)"
        % (
            fn,
            sorted(out)[:8] if isinstance(out, dict) else type(out).__name__,
            errors.INSTALL_HINT,
        ),
        "XENVOL_UNEXPECTED_ANSWER",
        {"fn": fn},
    )


def _placement(value: str) -> str:
    if value not in ("host", "pool"):
        raise errors.InvalidArgument("placement: host or pool", details={"field": "placement"})
    return value


def _vm_arg(vm: object) -> str:
    if not isinstance(vm, str) or not vm or len(vm) > 255:
        raise errors.InvalidArgument("vm: give a VM uuid or name label", details={"field": "vm"})
    return vm


def _op_id(op_id: Optional[str]) -> str:
    if op_id is None:
        return str(uuidlib.uuid4())
    if not isinstance(op_id, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", op_id):
        raise errors.InvalidArgument(
            "op_id: letters, digits, . _ - (at most 64)", details={"field": "op_id"}
        )
    return op_id
