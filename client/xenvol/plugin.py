"""One call of the xenvol plugin on a host: sent through tasks.py (natively routed by the
VM where asked), its JSON answer checked against the API level this client needs on the
host's first answer, and its failure mapped to a xenvol exception."""

import json
import threading
from typing import Any, Dict, Optional

import XenAPI

from . import errors, tasks
from .errors import Scrubber
from .session import PoolSession
from .transport import TRANSPORT_ERRORS
from .version import __version__

# 1.1: results carry the API level; attach/detach resolve the VM and answer WRONG_HOST.
REQUIRED_API = (1, 1)


class WrongHost(Exception):
    """The plugin's XENVOL_WRONG_HOST: the VM's work runs on another host (details say)."""

    def __init__(self, details: Dict[str, Any]) -> None:
        Exception.__init__(self, "wrong host")
        self.details = details


class Plugin:
    """The plugin on a pool's hosts, as one session sees it: what each host's plugin said
    of its version, and the hosts' uuids for messages.

    routing="native": VM calls through VM.call_host_plugin where xapi has it (25.22.0 and
    later); it holds the VM operation call_plugin for the whole call, so a VM.pool_migrate
    issued meanwhile waits for the call to end (message_forwarding.ml with_vm_operation,
    Policy.standard: neither refused nor interleaved), and a second VM.call_host_plugin on the
    VM fails OTHER_OPERATION_IN_PROGRESS at once (Policy.fail_immediately; that call then goes
    by host.call_plugin). "host": host.call_plugin on the VM's host. progress(step): called
    with the step a long operation is at, when it changes."""

    def __init__(
        self, ps: PoolSession, routing: str = "host", progress: Optional[tasks.Progress] = None
    ) -> None:
        self.ps = ps
        self.routing = routing
        self.progress = progress
        self.native: Optional[bool] = None  # VM.call_host_plugin: unknown, there, missing
        self.versions: Dict[str, Dict[str, Any]] = {}
        self.host_uuids: Dict[str, Optional[str]] = {}
        self._local = threading.local()  # per thread: where its call was sent

    def _interrupted(
        self,
        host_ref: Optional[str],
        vm_ref: Optional[str],
        fn: str,
        args: tasks.Args,
        e: KeyboardInterrupt,
    ) -> errors.Cancelled:
        """Ctrl-C during a changing call: cancel it by its op id, wait briefly for the
        rollback, and say what happened."""
        self.ps.reset()
        host_ref, vm_ref = getattr(self._local, "sent", (host_ref, vm_ref))
        op_id = args["op_id"]
        level = str((self.versions.get(host_ref or "") or {}).get("api_level", ""))
        outcome = tasks.cancel_and_wait(
            self.ps,
            host_ref,
            vm_ref,
            op_id,
            getattr(e, "task", None),
            prestart=tasks.level(level) >= (1, 2),
        )
        return errors.interrupted(fn, op_id, self.host_uuid(host_ref), outcome)

    def call(
        self,
        host_ref: Optional[str],
        fn: str,
        args: tasks.Args,
        scrub: Optional[Scrubber] = None,
        vm_ref: Optional[str] = None,
    ) -> Any:
        """The function's JSON answer. With vm_ref and routing="native", through
        VM.call_host_plugin (xapi forwards it to the VM's host); else host.call_plugin on
        host_ref. Raises WrongHost for the plugin's XENVOL_WRONG_HOST."""
        try:
            raw = self._send(host_ref, fn, args, vm_ref)
        except XenAPI.Failure as f:
            raise self._error(host_ref, fn, f.details, scrub) from None
        except KeyboardInterrupt as e:
            if fn not in tasks.ASYNC_FUNCTIONS:
                raise
            raise self._interrupted(host_ref, vm_ref, fn, args, e) from None
        except TRANSPORT_ERRORS as e:
            raise errors.connection_lost(
                fn, args.get("op_id"), self.host_uuid(host_ref), e
            ) from None
        try:
            out = json.loads(raw)
        except ValueError:
            raise errors.PluginIncompatible(
                "the xenvol plugin on host %s answered %s with "
                "something that is not JSON" % (self.host_uuid(host_ref), fn)
            ) from None
        if host_ref is not None and host_ref not in self.versions:
            if not isinstance(out, dict) or "api_level" not in out:
                self.check_version(host_ref)  # an older plugin: say which, and what to do
            else:
                self._check_level(host_ref, out)
        return out

    def _send(
        self, host_ref: Optional[str], fn: str, args: tasks.Args, vm_ref: Optional[str]
    ) -> str:
        if vm_ref is not None and self.routing == "native" and self.native is not False:
            try:
                return self._run(host_ref, vm_ref, fn, args)
            except XenAPI.Failure as f:
                code = f.details[0]
                if code == "MESSAGE_METHOD_UNKNOWN":
                    self.native = False  # xapi before 25.22.0
                elif code not in ("VM_BAD_POWER_STATE", "OTHER_OPERATION_IN_PROGRESS"):
                    raise
                # Not running, or another call_plugin on the VM: its host, directly.
            else:
                self.native = True
        return self._run(host_ref, None, fn, args)

    def _run(
        self, host_ref: Optional[str], vm_ref: Optional[str], fn: str, args: tasks.Args
    ) -> str:
        self._local.sent = (host_ref, vm_ref)
        return tasks.run(
            self.ps,
            host_ref,
            vm_ref,
            fn,
            args,
            self.wait_limit(host_ref),
            lambda: self.host_uuid(host_ref),
            self.progress,
        )

    def _error(
        self, host_ref: Optional[str], fn: str, details: Any, scrub: Optional[Scrubber]
    ) -> Exception:
        code = details[0]
        if code == "XENVOL_WRONG_HOST" and len(details) > 2:
            try:
                return WrongHost(json.loads(details[2]))
            except ValueError:
                pass
        if code == "HANDLE_INVALID":
            # A host ref that is gone: reading its uuid would fail the same way.
            return errors.from_failure(details, None, scrub)
        if code == "HOST_OFFLINE":
            return self._offline(host_ref, fn, details)
        if code.startswith("XENVOL_") and host_ref is not None and host_ref not in self.versions:
            # A failure carries no API level: an incompatible plugin says so first (a cost
            # only on a host's first answer, and only when it is a failure).
            self.check_version(host_ref)
        return errors.plugin_failure(details, fn, self.host_uuid(host_ref), scrub)

    def _offline(self, host_ref: Optional[str], fn: str, details: Any) -> errors.HostOffline:
        """HOST_OFFLINE names the host by ref: say which host, by uuid and name."""
        offline = str(details[1]) if len(details) > 1 else host_ref
        uuid = self.host_uuid(offline)
        try:
            name = str(self.ps.x.host.get_name_label(offline))
        except (XenAPI.Failure, OSError):
            name = ""
        return errors.HostOffline(
            "%s: host %s%s is offline (not live in the pool): xapi runs nothing there until it "
            "is back; call again then, or recover its work from another host"
            % (fn, uuid, " (%s)" % name if name else ""),
            "HOST_OFFLINE",
            {"xapi_error": [str(d) for d in details], "host_name": name, "host_uuid": uuid},
            uuid,
        )

    def host_uuid(self, host_ref: Optional[str]) -> Optional[str]:
        """A host's uuid for messages, read only when one is needed."""
        if host_ref is None:
            return None
        if host_ref not in self.host_uuids:
            try:
                self.host_uuids[host_ref] = str(self.ps.x.host.get_uuid(host_ref))
            except (XenAPI.Failure, OSError):
                return host_ref
        return self.host_uuids[host_ref]

    def wait_limit(self, host_ref: Optional[str]) -> float:
        """How long a changing call may take on a host: its plugin's wait limit (known from
        version()) plus a grace."""
        info = self.versions.get(host_ref or "") or {}
        try:
            return float(info.get("wait_limit", tasks.DEFAULT_WAIT_LIMIT)) + tasks.WAIT_GRACE
        except (TypeError, ValueError):
            return tasks.DEFAULT_WAIT_LIMIT + tasks.WAIT_GRACE

    def check_version(self, host_ref: str) -> Dict[str, Any]:
        """The plugin's version on a host (its version() function), checked once per
        session and host; plugin calls check the level their answer carries instead."""
        info = self.versions.get(host_ref)
        if info is None or "version" not in info:
            try:
                raw = tasks.call_plugin(self.ps.x, host_ref, None, "version", {})
            except XenAPI.Failure as f:
                raise self._error(host_ref, "version", f.details, None) from None
            try:
                answer = json.loads(raw)
            except ValueError:
                raise errors.PluginIncompatible(
                    "the xenvol plugin on host %s answered version "
                    "with something that is not JSON" % self.host_uuid(host_ref)
                ) from None
            self._check_level(host_ref, answer)
        return self.versions[host_ref]

    def _check_level(self, host_ref: str, info: Dict[str, Any]) -> None:
        level = tasks.level(str(info.get("api_level", "")))
        if len(level) != 2 or level[0] != REQUIRED_API[0] or level < REQUIRED_API:
            host_uuid = self.host_uuid(host_ref)
            raise errors.PluginIncompatible(
                "host %s has xenvol plugin %s (API %s); this client %s needs API %d.%d or a "
                "later %d.x: %s"
                % (
                    host_uuid,
                    info.get("version"),
                    info.get("api_level"),
                    __version__,
                    REQUIRED_API[0],
                    REQUIRED_API[1],
                    REQUIRED_API[0],
                    errors.INSTALL_HINT,
                ),
                host=host_uuid,
                details={
                    "installed": dict((k, info[k]) for k in ("version", "api_level") if k in info),
                    "required_api": "%d.%d" % REQUIRED_API,
                },
            )
        known = self.versions.get(host_ref) or {}
        self.versions[host_ref] = dict(
            known,
            **dict(
                (k, info[k])
                for k in ("plugin", "version", "api_level", "wait_limit", "config")
                if k in info
            ),
        )
