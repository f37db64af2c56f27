"""The xenvol client: marshal connection_info to the right host's plugin, check versions,
keep passwords out of dom0's argv, and raise clear exceptions."""
import contextlib
import copy
import json
import re
import socket
import time
import uuid as uuidlib
import xmlrpc.client
from urllib.parse import urlsplit, urlunsplit

import XenAPI

from . import errors, secrets
from .transport import for_url

PLUGIN = "xenvol"
# 1.1: results carry the API level; attach/detach resolve the VM and answer WRONG_HOST.
REQUIRED_API = (1, 1)
NULL = "OpaqueRef:NULL"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# What works: the signed pack (there is no yum repository carrying xenvol) or the bare RPM file.
_INSTALL_HINT = ("install the xenvol supplemental pack on it: `xenvol pack install HOST --iso "
                 "xenvol-VERSION.iso --key RPM-GPG-KEY-xenvol --import-key` from an admin machine, "
                 "or on the host `xe-install-supplemental-pack xenvol-VERSION.iso`, or "
                 "`yum install ./xenvol-xapi-plugin-VERSION-1.noarch.rpm`")
# The plugin functions that change the pool run as XAPI tasks (Async.host.call_plugin), with
# an operation id; the others are quick, plain calls.
ASYNC_FUNCTIONS = ("attach_volume", "detach_volume", "connect_volume", "disconnect_volume",
                   "gc", "extend_volume", "prepare_host", "release_host", "reconcile")
# A client waits this much longer than the plugin's own waits (version()'s wait_limit) before
# it calls an outcome unknown.
WAIT_GRACE = 60.0
# Client-made secrets that the plugin never consumed (both sides killed) expire: gc
# destroys them after this many seconds past the client's wait.
SECRET_TTL_GRACE = 300
TASK_OP_KEY = "xenvol-op"
TASK_STEP_KEY = "xenvol-step"


class ConnectionFailed(errors.XenvolError):
    pass


class _TaskGone(Exception):
    """The plugin call's task was destroyed before its answer was read."""


# pool URL -> the master's host ref, shared by the clients of one process.
_MASTERS = {}


class _WrongHost(Exception):
    """The plugin's XENVOL_WRONG_HOST: the VM's work runs on another host (details say)."""

    def __init__(self, details):
        Exception.__init__(self, "wrong host")
        self.details = details


class _Record(object):
    FIELDS = ()

    def __init__(self, **values):
        for f in self.FIELDS:
            setattr(self, f, values.get(f))

    def to_dict(self):
        return dict((f, getattr(self, f)) for f in self.FIELDS if getattr(self, f) is not None)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in
                                                          sorted(self.to_dict().items())))

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()


class Attachment(_Record):
    """A volume attached to a VM: what attach() returns and detach() accepts."""
    FIELDS = ("sr_uuid", "vdi_uuid", "vbd_uuid", "vm_uuid", "userdevice", "device", "plugged",
              "mode", "host_uuid", "driver_volume_type", "volume_id", "note", "ignored")


class Connection(_Record):
    """A volume connected to a host without a VM."""
    FIELDS = ("sr_uuid", "vdi_uuid", "host_uuid", "driver_volume_type", "ignored")


class Client(object):
    """Talk to a pool. Build it from a URL and credentials (it follows HOST_IS_SLAVE to the
    master, verifies TLS unless verify_tls=False, and logs out on close()), or from an
    existing XenAPI.Session with Client.from_session(session)."""

    def __init__(self, url=None, username="root", password=None, verify_tls=True, cafile=None,
                 timeout=60.0, originator="xenvol", pinned_certs=None, progress=None,
                 routing="host"):
        self.timeout = timeout
        self._pins = dict(pinned_certs or {})  # "host:port" -> SHA-256 of a trusted certificate
        # progress(step): called with the step a long operation is at, when it changes.
        self.progress = progress
        self._verify = verify_tls
        self._cafile = cafile
        self._versions = {}
        # routing="native": VM calls through VM.call_host_plugin where xapi has it (25.22.0
        # and later); it holds the VM operation call_plugin for the whole call, so a VM
        # shutdown or migrate meanwhile fails OTHER_OPERATION_IN_PROGRESS. "host" (default):
        # host.call_plugin on the VM's host, known from earlier answers.
        if routing not in ("host", "native"):
            raise errors.InvalidArgument("routing: host or native", details={"field": "routing"})
        self.routing = routing
        self._native = None  # VM.call_host_plugin: unknown, True, False (xapi lacks it)
        self._routes = {}  # VM uuid or name -> {host_ref, vm_ref, vm_running} last answered
        self._host_uuids = {}
        self._master_host = None
        self._transport = None
        self._owned = False
        self.session = None
        self.url = None
        if url is not None:
            self.session, self.url = self._login(url, username, password or "", originator)
            self._owned = True

    @classmethod
    def from_session(cls, session):
        client = cls()
        client.session = session
        client.url = None  # borrowed: the caller owns the session and logs it out
        return client

    # ------------------------------------------------------------------ session
    def _login(self, url, username, password, originator):
        for _hop in range(3):
            self._transport = for_url(url, self.timeout, self._verify, self._cafile,
                                      self._pin(url))
            session = XenAPI.Session(url, transport=self._transport)
            try:
                session.login_with_password(username, password, "1.0", originator)
                return session, url
            except XenAPI.Failure as f:
                if f.details[0] == "HOST_IS_SLAVE":
                    url = _with_host(url, f.details[1])
                    continue
                raise errors.from_failure(f.details, scrub=secrets.Scrub([password]))
            except (socket.error, OSError) as e:
                raise ConnectionFailed("cannot reach %s: %s" % (url, e))
        raise ConnectionFailed("too many HOST_IS_SLAVE redirects from %s" % url)

    def _pin(self, url):
        parts = urlsplit(url)
        return self._pins.get("%s:%d" % (parts.hostname, parts.port or 443))

    def close(self):
        if self._owned and self.session is not None:
            try:
                self.session.xenapi.session.logout()
            except Exception:
                pass
        self.session = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def x(self):
        if self.session is None:
            raise errors.XenvolError("the client is closed")
        return self.session.xenapi

    def _xapi(self, fn, *args):
        try:
            return fn(*args)
        except XenAPI.Failure as f:
            raise errors.from_failure(f.details)

    # ------------------------------------------------------------------ lookups
    def _vm(self, vm):
        """A VM by uuid or name label (ambiguous names are an error)."""
        if not isinstance(vm, str) or not vm:
            raise errors.InvalidArgument("vm: give a VM uuid or name label", details={"field": "vm"})
        if _UUID.match(vm):
            try:
                return self.x.VM.get_by_uuid(vm)
            except XenAPI.Failure as f:
                if f.details[0] != "UUID_INVALID":
                    raise errors.from_failure(f.details)
        refs = [r for r in self._xapi(self.x.VM.get_by_name_label, vm)
                if not self.x.VM.get_is_a_template(r) and not self.x.VM.get_is_control_domain(r)]
        if not refs:
            raise errors.VMNotFound("vm: no VM named or numbered %r" % vm, details={"field": "vm"})
        if len(refs) > 1:
            raise errors.InvalidArgument("vm: %d VMs are named %r; give its uuid" % (len(refs), vm),
                                         details={"field": "vm"})
        return refs[0]

    def _host(self, host):
        if _UUID.match(host or ""):
            try:
                return self.x.host.get_by_uuid(host)
            except XenAPI.Failure:
                pass
        refs = self._xapi(self.x.host.get_by_name_label, host or "")
        if len(refs) != 1:
            raise errors.HostNotFound("host: no single host %r" % host, details={"field": "host"})
        return refs[0]

    def _master(self):
        return self._xapi(self.x.pool.get_master, self._xapi(self.x.pool.get_all)[0])

    def host_for_vm(self, vm_ref):
        """Where work for a VM runs: where it runs, else where it would start, else the master."""
        rec = self._xapi(self.x.VM.get_record, vm_ref)
        if rec["power_state"] in ("Running", "Paused") and rec["resident_on"] != NULL:
            return rec["resident_on"]
        if rec["affinity"] != NULL and rec["affinity"] in self._xapi(self.x.host.get_all):
            return rec["affinity"]
        return self._master()

    # ------------------------------------------------------------------ plugin calls
    def _plugin(self, host_ref, fn, args, scrub=None, vm_ref=None):
        """One plugin call, checked against the plugin's API level on its first answer.
        With vm_ref and routing="native", through VM.call_host_plugin (xapi forwards it to
        the VM's host); else host.call_plugin on host_ref."""
        try:
            out = self._send(host_ref, fn, args, vm_ref)
        except XenAPI.Failure as f:
            raise self._plugin_error(host_ref, fn, f, scrub)
        try:
            out = json.loads(out)
        except ValueError:
            raise errors.PluginIncompatible("the xenvol plugin on host %s answered %s with "
                                            "something that is not JSON"
                                            % (self._host_uuid(host_ref), fn))
        if host_ref is not None and host_ref not in self._versions:
            if not isinstance(out, dict) or "api_level" not in out:
                self.check_version(host_ref)  # an older plugin: say which, and what to do
            else:
                self._check_level(host_ref, out)
        return out

    def _send(self, host_ref, fn, args, vm_ref):
        native = vm_ref is not None and self.routing == "native" and self._native is not False
        if native:
            try:
                return self._sync_or_task(fn, args, host_ref, vm_ref)
            except XenAPI.Failure as f:
                code = f.details[0]
                if code == "MESSAGE_METHOD_UNKNOWN":
                    self._native = False  # xapi before 25.22.0
                elif code not in ("VM_BAD_POWER_STATE", "OTHER_OPERATION_IN_PROGRESS"):
                    raise
                # Not running, or another call_plugin on the VM: its host, directly.
            else:
                self._native = True
        return self._sync_or_task(fn, args, host_ref, None)

    def _sync_or_task(self, fn, args, host_ref, vm_ref):
        if fn in ASYNC_FUNCTIONS and self.progress is not None:
            return self._run_task(host_ref, vm_ref, fn, args)
        if fn in ASYNC_FUNCTIONS:
            return self._run_sync(host_ref, vm_ref, fn, args)
        try:
            return self._call_plugin(host_ref, vm_ref, fn, args)
        except (socket.timeout, OSError) as e:
            # A quick call (it changes nothing) unanswered: never a bare TimeoutError.
            host_uuid = self._host_uuid(host_ref)
            raise ConnectionFailed("%s on host %s: no answer from XAPI (%s)" % (fn, host_uuid, e),
                                   host=host_uuid)

    def _call_plugin(self, host_ref, vm_ref, fn, args, prefix=None):
        api = prefix or self.x
        if vm_ref is not None:
            return api.VM.call_host_plugin(vm_ref, PLUGIN, fn, args)
        return api.host.call_plugin(host_ref, PLUGIN, fn, args)

    def _run_sync(self, host_ref, vm_ref, fn, args):
        """A changing call as one plain request, whose HTTP timeout is the plugin's own
        wait limit plus a grace: no poll, no task to destroy. A request that times out is
        asked again with the same op id (the plugin answers with the first run's result, or
        waits for it) until the wait limit is spent."""
        op_id = args["op_id"]
        deadline = time.monotonic() + self._wait_limit(host_ref)
        cause = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out(fn, op_id, self._host_uuid(host_ref), cause)
            try:
                with _request_timeout(self._transport, left):
                    return self._call_plugin(host_ref, vm_ref, fn, args)
            except (socket.timeout, OSError) as e:
                cause = e
                if not isinstance(e, socket.timeout):
                    # Refused or reset: the master restarting, say; not a busy loop.
                    time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            except XenAPI.Failure as f:
                if cause is None or f.details[0] != "XENVOL_BUSY":
                    raise
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _plugin_error(self, host_ref, fn, f, scrub):
        code = f.details[0]
        if code == "XENVOL_WRONG_HOST" and len(f.details) > 2:
            try:
                return _WrongHost(json.loads(f.details[2]))
            except ValueError:
                pass
        host_uuid = self._host_uuid(host_ref)
        if code == "XENAPI_MISSING_PLUGIN":
            return errors.PluginMissing("host %s has no xenvol plugin: %s" % (host_uuid,
                                                                            _INSTALL_HINT),
                                        code, {"xapi_error": f.details}, host_uuid)
        if code == "UNKNOWN_XENAPI_PLUGIN_FUNCTION":
            return errors.PluginIncompatible(
                "the xenvol plugin on host %s has no function %s: upgrade it (%s)"
                % (host_uuid, fn, _INSTALL_HINT), code, {"xapi_error": f.details}, host_uuid)
        if code.startswith("XENVOL_") and host_ref is not None \
                and host_ref not in self._versions:
            # A failure carries no API level: an incompatible plugin says so first (a cost
            # only on a host's first answer, and only when it is a failure).
            self.check_version(host_ref)
        return errors.from_failure(f.details, host_uuid, scrub)

    def _host_uuid(self, host_ref):
        """A host's uuid for messages, read only when one is needed."""
        if host_ref is None:
            return None
        if host_ref not in self._host_uuids:
            try:
                self._host_uuids[host_ref] = self.x.host.get_uuid(host_ref)
            except (XenAPI.Failure, socket.error, OSError):
                return host_ref
        return self._host_uuids[host_ref]

    # ------------------------------------------------------------------ routing
    def _master_ref(self):
        """The master, where this session was made: one call per process and pool URL (a
        host's ref lasts as long as the host's database record)."""
        if self._master_host is None:
            self._master_host = _MASTERS.get(self.url) or self._xapi(
                self.x.session.get_this_host, self.session._session)
            if self.url:
                _MASTERS[self.url] = self._master_host
        return self._master_host

    def _vm_call(self, vm, fn, args, scrub=None):
        """A call about a VM (uuid or name, resolved in dom0), sent with no lookup: to the
        host this client last saw the VM's work on, else the master, with route=strict. A
        plugin that finds the VM's work elsewhere answers WRONG_HOST naming the host, and the
        call goes there (a second hop only if the VM migrated meanwhile)."""
        route = self._routes.get(vm)
        args = dict(args, route="strict")
        for _hop in range(3):
            host_ref = route["host_ref"] if route else self._master_ref()
            vm_ref = route["vm_ref"] if route and route.get("vm_running") else None
            try:
                out = self._plugin(host_ref, fn, args, scrub, vm_ref)
            except errors.XenvolError as e:
                if e.code != "HANDLE_INVALID" or _hop:
                    raise
                # A remembered host or VM that is gone (a host left the pool): ask afresh.
                self._routes.pop(vm, None)
                _MASTERS.pop(self.url, None)
                self._master_host, route = None, None
                continue
            except _WrongHost as e:
                route = {"host_ref": e.details.get("host_ref"), "vm_ref": e.details.get("vm_ref"),
                         "vm_running": False}
                self._host_uuids[route["host_ref"]] = e.details.get("host_uuid")
                self._routes[vm] = route
                continue
            if isinstance(out, dict) and isinstance(out.get("route"), dict):
                self._routes[vm] = out.pop("route")
                if out.get("vm_uuid"):
                    self._routes[out["vm_uuid"]] = self._routes[vm]
            return out
        raise errors.XenvolError("%s: the VM's host kept changing; try again" % fn,
                                 "XENVOL_BUSY", {"vm": vm})

    # ------------------------------------------------------------------ tasks
    def _wait_limit(self, host_ref):
        info = self._versions.get(host_ref) or {}
        try:
            return float(info.get("wait_limit", 120)) + WAIT_GRACE
        except (TypeError, ValueError):
            return 120 + WAIT_GRACE

    def _run_task(self, host_ref, vm_ref, fn, args):
        """Run a plugin call as a XAPI task and wait for it (bounded), for a caller that shows
        progress: no HTTP request lasts longer than a poll. Ctrl-C cancels the operation (the
        plugin rolls back). A task gone before its answer was read (xapi's task GC destroys
        completed tasks beyond max_tasks: xen-api db_gc_util.ml timeout_tasks) is asked again
        by its op id, whose finished result the plugin keeps, until the deadline."""
        op_id = args["op_id"]
        host_uuid = self._host_uuid(host_ref)
        deadline = time.monotonic() + self._wait_limit(host_ref)
        while True:
            try:
                return self._task_once(host_ref, vm_ref, host_uuid, fn, args, deadline)
            except _TaskGone:
                if time.monotonic() >= deadline:
                    raise self._timed_out(fn, op_id, host_uuid, "its task vanished")

    def _task_once(self, host_ref, vm_ref, host_uuid, fn, args, deadline):
        op_id = args["op_id"]
        try:
            task = self._call_plugin(host_ref, vm_ref, fn, args, self.x.Async)
        except (socket.timeout, OSError) as e:
            raise self._timed_out(fn, op_id, host_uuid, e)
        try:
            try:
                rec = self._wait_task(task, op_id, deadline, fn, host_uuid)
            except KeyboardInterrupt:
                self._cancel(host_ref or self._resident(vm_ref), op_id)
                rec = self._wait_task(task, op_id, deadline, fn, host_uuid)
                if rec["status"] == "success":
                    raise errors.Cancelled("%s completed before it could be cancelled" % fn,
                                           "XENVOL_CANCELLED", {"op_id": op_id,
                                                                "completed": True}, host_uuid)
        finally:
            try:
                self.x.task.destroy(task)
            except (XenAPI.Failure, socket.error, OSError):
                pass
        if rec["status"] == "success":
            return _task_result(rec["result"])
        raise XenAPI.Failure(rec["error_info"])

    def _wait_task(self, task, op_id, deadline, fn, host_uuid):
        delay, tagged, step = 0.02, False, None
        started = time.monotonic()
        while True:
            try:
                rec = self.x.task.get_record(task)
            except (socket.timeout, OSError) as e:
                if time.monotonic() >= deadline:
                    raise self._timed_out(fn, op_id, host_uuid, e)
                rec = None
            except XenAPI.Failure as f:
                if f.details[:2] == ["HANDLE_INVALID", "task"]:
                    raise _TaskGone()
                raise
            if rec is not None:
                if rec["status"] != "pending":
                    return rec
                shown = rec["other_config"].get(TASK_STEP_KEY)
                if shown and shown != step and self.progress:
                    step = shown
                    self.progress(shown)
                if not tagged and time.monotonic() - started > 0.5:
                    # Only calls that last pay for this: the plugin finds its task by it to
                    # write its progress there.
                    tagged = True
                    try:
                        self.x.task.add_to_other_config(task, TASK_OP_KEY, op_id)
                    except XenAPI.Failure:
                        pass
            if time.monotonic() >= deadline:
                raise self._timed_out(fn, op_id, host_uuid, None)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    def _timed_out(self, fn, op_id, host_uuid, cause):
        return errors.OperationTimedOut(
            "%s: no answer in time (%s); the operation may still complete; attachments() "
            "tells, and the same call with op_id=%s returns its result"
            % (fn, cause or "waited %ds" % self._wait_limit(None), op_id),
            "XENVOL_OPERATION_TIMED_OUT", {"op_id": op_id}, host_uuid)

    def _cancel(self, host_ref, op_id):
        try:
            self.x.host.call_plugin(host_ref, PLUGIN, "cancel", {"operation": op_id})
        except (XenAPI.Failure, socket.error, OSError):
            pass

    def _resident(self, vm_ref):
        return self._xapi(self.x.VM.get_resident_on, vm_ref)

    def check_version(self, host_ref):
        """The plugin's version on a host (its version() function), checked once per
        session and host; plugin calls check the level their answer carries instead."""
        info = self._versions.get(host_ref)
        if info is None or "version" not in info:
            try:
                out = self._call_plugin(host_ref, None, "version", {})
            except XenAPI.Failure as f:
                raise self._plugin_error(host_ref, "version", f, None)
            try:
                info = json.loads(out)
            except ValueError:
                raise errors.PluginIncompatible("the xenvol plugin on host %s answered version "
                                                "with something that is not JSON"
                                                % self._host_uuid(host_ref))
            self._check_level(host_ref, info)
        return self._versions[host_ref]

    def _check_level(self, host_ref, info):
        try:
            level = tuple(int(p) for p in str(info.get("api_level", "")).split(".")[:2])
        except ValueError:
            level = ()
        if len(level) != 2 or level[0] != REQUIRED_API[0] or level < REQUIRED_API:
            host_uuid = self._host_uuid(host_ref)
            raise errors.PluginIncompatible(
                "host %s has xenvol plugin %s (API %s); this client %s needs API %d.%d or a "
                "later %d.x: %s" % (host_uuid, info.get("version"), info.get("api_level"),
                                    _client_version(), REQUIRED_API[0], REQUIRED_API[1],
                                    REQUIRED_API[0], _INSTALL_HINT), host=host_uuid,
                details={"installed": dict((k, info[k]) for k in ("version", "api_level")
                                           if k in info),
                         "required_api": "%d.%d" % REQUIRED_API})
        known = self._versions.get(host_ref) or {}
        self._versions[host_ref] = dict(known, **dict(
            (k, info[k]) for k in ("plugin", "version", "api_level", "wait_limit") if k in info))

    # ------------------------------------------------------------------ secrets
    def _stash_secrets(self, connection_info, tags=None):
        """connection_info re-nested if flat, with every secret-bearing value (the key list of
        xenvol.secrets) replaced by a XAPI secret created through our own session; only its
        uuid travels to dom0. Passwords are checked as the plugin checks them first, and the
        document's size against the plugin's limit, before any secret exists."""
        if not isinstance(connection_info, dict):
            raise errors.InvalidConnectionInfo("connection_info: must be an object",
                                               details={"field": "connection_info"})
        info = secrets.renest(copy.deepcopy(connection_info))

        def error(field, problem):
            return errors.InvalidConnectionInfo("%s: %s" % (field, problem),
                                                details={"field": field})
        dry = secrets.rewrite(info, lambda value, field: "0" * 8 + "-0000" * 3 + "-" + "0" * 12,
                              error)
        size = len(json.dumps(dry).encode("utf-8"))
        if size > secrets.MAX_DOCUMENT:
            raise errors.InvalidConnectionInfo(
                "connection_info: is too large (%d bytes, at most %d): XAPI passes it on dom0's "
                "command line" % (size, secrets.MAX_DOCUMENT),
                details={"field": "connection_info"})
        created, by_value = {}, {}

        def make(value, field):
            # One secret per distinct value, so equal passwords stay equal. secret.introduce
            # with a uuid of our own (xen-api datamodel.ml Secret.introduce, _R_POOL_OP;
            # xapi_secret.ml create is introduce with a fresh uuid): one round trip, where
            # create then get_uuid would be two.
            if value not in by_value:
                uuid = str(uuidlib.uuid4())
                created[uuid] = self._xapi(self.x.secret.introduce, uuid, value, tags or {})
                by_value[value] = uuid
            return by_value[value]
        try:
            info = secrets.rewrite(info, make, error)
        except Exception:
            self._drop_secrets(created.values())
            raise
        # The plugin destroys what it consumes (data's *password_secret, call.py
        # consume_secrets) when its call ends; the client destroys the rest.
        data = info.get("data") if isinstance(info.get("data"), dict) else {}
        consumed = set(v for k, v in data.items() if str(k).endswith("password_secret"))
        leftover = [ref for uuid, ref in created.items() if uuid not in consumed]
        return info, list(created.values()), leftover, secrets.Scrub(list(by_value))

    def _drop_secrets(self, refs):
        """Destroy secrets we made. xapi copied into a PBD's own secrets whatever PBD.create
        took (xen-api ocaml/xapi/xapi_pbd.ml create, Xapi_secret.duplicate_passwds)."""
        for ref in refs:
            try:
                self.x.secret.destroy(ref)
            except (XenAPI.Failure, socket.error, OSError):
                pass

    def _with_secrets(self, connection_info, host_ref, fn, args, vm=None):
        # Tagged, so that the plugin consumes them and gc finds any a kill -9 left.
        expires = time.time() + self._wait_limit(host_ref) + SECRET_TTL_GRACE
        info, created, leftover, scrub = self._stash_secrets(connection_info, {
            "xenvol": "client", "xenvol-op": args["op_id"], "xenvol-expires": "%d" % expires})
        args = dict(args, connection_info=json.dumps(info))
        try:
            if vm is not None:
                out = self._vm_call(vm, fn, args, scrub)
            else:
                out = self._plugin(host_ref, fn, args, scrub)
        except errors.OperationTimedOut:
            raise  # the plugin may still use them; they expire, and gc removes them
        except Exception:
            self._drop_secrets(created)
            raise
        self._drop_secrets(leftover)
        return out

    # ------------------------------------------------------------------ the API
    def attach(self, connection_info, vm, mountpoint="autodetect", read_only=None, hotplug=True,
               op_id=None, placement=None):
        """Attach a volume to a VM (uuid or name); returns an Attachment. op_id: this
        operation's id (default: a new one); the same call with the same op_id returns the
        first one's result (after OperationTimedOut, say). placement: "host" (the SR plugged
        on the VM's host and the master) or "pool" (on every host); default: the hosts'
        xenvol.conf."""
        args = {"vm": _vm_arg(vm), "mountpoint": str(mountpoint),
                "hotplug": "true" if hotplug else "false", "op_id": _op_id(op_id)}
        if placement is not None:
            args["placement"] = _placement(placement)
        if read_only is not None:
            args["mode"] = "ro" if read_only else "rw"
        return Attachment(**self._with_secrets(connection_info, None, "attach_volume", args,
                                               vm=args["vm"]))

    def detach(self, vm=None, mountpoint=None, attachment=None, vdi=None, op_id=None):
        """Detach by VM and mount point, by Attachment, or every xenvol VBD of a VDI uuid.
        Returns the Attachments detached (empty when nothing was attached)."""
        if attachment is not None:
            key, args = attachment.vm_uuid, {"vbd_uuid": attachment.vbd_uuid}
        elif vdi is not None:
            # Its VM's host is found in dom0 (WRONG_HOST), not by lookups from here.
            key, args = vdi, {"vdi_uuid": vdi}
        elif vm is not None and mountpoint is not None:
            key = _vm_arg(vm)
            args = {"vm": key, "mountpoint": str(mountpoint)}
        else:
            raise errors.InvalidArgument("detach: give vm and mountpoint, attachment, or vdi",
                                         details={"field": "mountpoint"})
        args["op_id"] = _op_id(op_id)
        out = self._vm_call(key, "detach_volume", args)
        return [Attachment(**a) for a in out["detached"]]

    def connect(self, connection_info, host, op_id=None, placement=None):
        """Connect a volume to a host (uuid or name) without a VM; returns a Connection."""
        host_ref = self._host(host)
        args = {"op_id": _op_id(op_id)}
        if placement is not None:
            args["placement"] = _placement(placement)
        return Connection(**self._with_secrets(connection_info, host_ref, "connect_volume",
                                               args))

    def disconnect(self, connection=None, connection_info=None, host=None, op_id=None):
        """Undo connect(): give the Connection, or connection_info and the host."""
        if connection is not None:
            host_ref = self._host(connection.host_uuid)
            args = {"sr_uuid": connection.sr_uuid, "vdi_uuid": connection.vdi_uuid,
                    "op_id": _op_id(op_id)}
            return self._plugin(host_ref, "disconnect_volume", args)
        if connection_info is None or host is None:
            raise errors.InvalidArgument("disconnect: give a Connection, or connection_info and "
                                         "host", details={"field": "connection"})
        info, created, _leftover, scrub = self._stash_secrets(connection_info)
        self._drop_secrets(created)  # disconnect needs no password; never send one
        return self._plugin(self._host(host), "disconnect_volume",
                            {"connection_info": json.dumps(info), "op_id": _op_id(op_id)}, scrub)

    def attachments(self, vm=None, skipped=None):
        """The volumes xenvol attached, on the VM's host or on every host. With a list as
        `skipped`, a host without a usable plugin is appended to it (as the PluginError) and
        the other hosts are still listed."""
        if vm is not None:
            vm_ref = self._vm(vm)
            out = self._plugin(self.host_for_vm(vm_ref), "list_attachments",
                               {"vm_uuid": self.x.VM.get_uuid(vm_ref)})
            found = out["attachments"]
        else:
            found = []
            for host in self._xapi(self.x.host.get_all):
                try:
                    out = self._plugin(host, "list_attachments", {})
                except errors.PluginError as e:
                    if skipped is None:
                        raise
                    skipped.append(e)
                    continue
                found.extend(dict(a, host_uuid=self.x.host.get_uuid(host))
                             for a in out["attachments"])
        return [Attachment(**a) for a in found]

    def gc(self, dry_run=True):
        """What xenvol left that nothing uses (dead operations' journals and leases, SRs and
        PBDs it made that nothing uses, orphan secrets, claims of hosts that left): a list
        of items {kind, id, why, action, host_uuid}; removed only with dry_run=False. It
        never touches an object xenvol did not make."""
        items = []
        master = self._master()
        hosts = [master] + [h for h in self._xapi(self.x.host.get_all) if h != master]
        for host in hosts:
            args = {"apply": "false" if dry_run else "true",
                    "pool": "true" if host == master else "false", "op_id": _op_id(None)}
            out = self._plugin(host, "gc", args)
            items.extend(dict(i, host_uuid=out["host_uuid"]) for i in out["items"])
        return items

    def drivers(self, host=None, skipped=None):
        """{host uuid: {"drivers": [...], "failed": [...]}} for one host or all; `skipped` as
        in attachments()."""
        hosts = [self._host(host)] if host else self._xapi(self.x.host.get_all)
        out = {}
        for h in hosts:
            try:
                out[self.x.host.get_uuid(h)] = self._plugin(h, "list_drivers", {})
            except errors.PluginError as e:
                if skipped is None:
                    raise
                skipped.append(e)
        return out

    # ------------------------------------------------------------------ integrators
    def extend(self, connection_info=None, vdi=None, op_id=None):
        """After the backend grew a volume (attached or connected): every host with its SR
        plugged re-reads the size, the VDI's virtual_size follows; returns {old_size,
        new_size, grew, vbds: [{vm_uuid, device, plugged, sees}]}. Give connection_info or
        the VDI's uuid."""
        if connection_info is not None:
            info, created, _leftover, scrub = self._stash_secrets(connection_info)
            self._drop_secrets(created)  # extending needs no password; never send one
            args = {"connection_info": json.dumps(info)}
        elif vdi is not None:
            args, scrub = {"vdi_uuid": vdi}, None
        else:
            raise errors.InvalidArgument("extend: give connection_info or vdi",
                                         details={"field": "connection_info"})
        args["op_id"] = _op_id(op_id)
        return self._plugin(self._master(), "extend_volume", args, scrub)

    def connector(self, vm=None, host=None, placement="host"):
        """What the array must know before Cinder's initialize_connection: for each host a
        volume will be plugged on, its initiator IQN, FC WWPNs/WWNNs and NVMe host NQN where
        it has them, IPs and name. With vm: the hosts an attach to it plugs the SR on (its
        host and the pool master: xapi scans shared SRs on the master), every enabled host
        with placement="pool"; with host: that host; else every host. Returns {"hosts":
        [...], "plug_hosts": [host uuids], "connector": the first host's, os-brick's shape}."""
        master = self._master()
        if host is not None:
            targets = [self._host(host)]
        elif vm is not None and placement != "pool":
            first = self.host_for_vm(self._vm(vm))
            targets = [first] + ([master] if master != first else [])
        else:
            all_hosts = self._xapi(self.x.host.get_all)
            if vm is not None:
                first = self.host_for_vm(self._vm(vm))
                all_hosts = [first] + [h for h in all_hosts if h != first]
            targets = [h for h in all_hosts if self._xapi(self.x.host.get_enabled, h)] \
                if vm is not None else all_hosts
        hosts = [self._plugin(h, "connector", {}) for h in targets]
        return {"hosts": hosts, "plug_hosts": [h["host_uuid"] for h in hosts],
                "connector": dict(hosts[0]) if hosts else {}}

    def migrate(self, vm, host, live=True, op_id=None):
        """Move a running VM with xenvol disks to another host of the pool: the disks' SRs
        are plugged on the destination first, then VM.pool_migrate, then the source's PBDs
        that nothing there needs are released. On failure the destination is released again
        and the error raised. Returns {vm_uuid, source, destination, prepared, released}."""
        vm_ref = self._vm(vm)
        dest = self._host(host)
        vm_uuid = self._xapi(self.x.VM.get_uuid, vm_ref)
        source = self._xapi(self.x.VM.get_resident_on, vm_ref)
        op = _op_id(op_id)
        prepared = self._plugin(dest, "prepare_host", {"vm_uuid": vm_uuid, "op_id": op})
        try:
            self._xapi(self.x.VM.pool_migrate, vm_ref, dest, {"live": "true" if live else
                                                              "false"})
        except BaseException:
            try:
                self._plugin(dest, "release_host", {"vm_uuid": vm_uuid, "op_id": _op_id(None)})
            except errors.XenvolError:
                pass  # gc finds what is left
            raise
        released = []
        if source not in (NULL, dest):
            released = self._plugin(source, "release_host",
                                    {"vm_uuid": vm_uuid, "op_id": _op_id(None)})["released"]
        return {"vm_uuid": vm_uuid, "source": self._xapi(self.x.host.get_uuid, source)
                if source != NULL else "", "destination": prepared["host_uuid"],
                "prepared": prepared["sr_uuids"], "released": released}

    def reconcile(self, apply=False):
        """Pool-wide placement kept up to date: PBDs on every enabled, live host for the SRs
        attached with placement="pool" (hosts that joined or came back). Returns the items
        found (made with apply=True)."""
        return self._plugin(self._master(), "reconcile",
                            {"apply": "true" if apply else "false", "op_id": _op_id(None)})["items"]

    def versions(self):
        """{host uuid: version info, or the error text} for every host."""
        out = {}
        for h in self._xapi(self.x.host.get_all):
            uuid = self.x.host.get_uuid(h)
            try:
                out[uuid] = self.check_version(h)
            except errors.XenvolError as e:
                out[uuid] = {"error": e.message, "code": e.code or type(e).__name__}
        return out


def _placement(value):
    if value not in ("host", "pool"):
        raise errors.InvalidArgument("placement: host or pool", details={"field": "placement"})
    return value


@contextlib.contextmanager
def _request_timeout(transport, seconds):
    """The HTTP timeout of the requests made meanwhile (a session the client made; a
    borrowed session keeps its owner's timeouts)."""
    if transport is None:
        yield
        return
    old = transport.timeout
    transport.timeout = seconds
    conn = getattr(transport, "_connection", (None, None))[1]
    if conn is not None and conn.sock is not None:
        conn.sock.settimeout(seconds)
    try:
        yield
    finally:
        transport.timeout = old
        conn = getattr(transport, "_connection", (None, None))[1]
        if conn is not None and conn.sock is not None:
            conn.sock.settimeout(old)


def _vm_arg(vm):
    if not isinstance(vm, str) or not vm or len(vm) > 255:
        raise errors.InvalidArgument("vm: give a VM uuid or name label", details={"field": "vm"})
    return vm


def _op_id(op_id):
    if op_id is None:
        return str(uuidlib.uuid4())
    if not isinstance(op_id, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", op_id):
        raise errors.InvalidArgument("op_id: letters, digits, . _ - (at most 64)",
                                     details={"field": "op_id"})
    return op_id


def _task_result(result):
    """A task's result is the call's value as XML-RPC writes it (<value>...</value>)."""
    params, _ = xmlrpc.client.loads("<methodResponse><params><param>%s</param></params>"
                                    "</methodResponse>" % result)
    return params[0]


def _with_host(url, address):
    """The master's URL: same scheme and port, the address HOST_IS_SLAVE gave."""
    parts = urlsplit(url)
    host = "[%s]" % address if ":" in address and not address.startswith("[") else address
    netloc = host + (":%d" % parts.port if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def _client_version():
    from . import __version__
    return __version__
