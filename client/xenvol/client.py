"""The xenvol client: marshal connection_info to the right host's plugin, check versions,
keep passwords out of dom0's argv, and raise clear exceptions."""
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
REQUIRED_API = (1, 0)
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
                 timeout=60.0, originator="xenvol", pinned_certs=None, progress=None):
        self.timeout = timeout
        self._pins = dict(pinned_certs or {})  # "host:port" -> SHA-256 of a trusted certificate
        # progress(step): called with the step a long operation is at, when it changes.
        self.progress = progress
        self._verify = verify_tls
        self._cafile = cafile
        self._versions = {}
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
            session = XenAPI.Session(url, transport=for_url(url, self.timeout, self._verify,
                                                            self._cafile, self._pin(url)))
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
    def _plugin(self, host_ref, fn, args, scrub=None):
        self.check_version(host_ref)
        return self._raw_plugin(host_ref, fn, args, scrub)

    def _raw_plugin(self, host_ref, fn, args, scrub=None):
        host_uuid = self._xapi(self.x.host.get_uuid, host_ref)
        try:
            if fn in ASYNC_FUNCTIONS:
                out = self._run_task(host_ref, host_uuid, fn, args)
            else:
                try:
                    out = self.x.host.call_plugin(host_ref, PLUGIN, fn, args)
                except (socket.timeout, OSError) as e:
                    # A quick call (it changes nothing) unanswered: never a bare TimeoutError.
                    raise ConnectionFailed("%s on host %s: no answer from XAPI (%s)"
                                           % (fn, host_uuid, e), host=host_uuid)
        except XenAPI.Failure as f:
            code = f.details[0]
            if code == "XENAPI_MISSING_PLUGIN":
                raise errors.PluginMissing("host %s has no xenvol plugin: %s" % (host_uuid,
                                                                                 _INSTALL_HINT),
                                           code, {"xapi_error": f.details}, host_uuid)
            if code == "UNKNOWN_XENAPI_PLUGIN_FUNCTION":
                raise errors.PluginIncompatible(
                    "the xenvol plugin on host %s has no function %s: upgrade it (%s)"
                    % (host_uuid, fn, _INSTALL_HINT), code, {"xapi_error": f.details}, host_uuid)
            raise errors.from_failure(f.details, host_uuid, scrub)
        try:
            return json.loads(out)
        except ValueError:
            raise errors.PluginIncompatible("the xenvol plugin on host %s answered %s with "
                                            "something that is not JSON" % (host_uuid, fn),
                                            host=host_uuid)

    # ------------------------------------------------------------------ tasks
    def _wait_limit(self, host_ref):
        info = self._versions.get(host_ref) or {}
        try:
            return float(info.get("wait_limit", 120)) + WAIT_GRACE
        except (TypeError, ValueError):
            return 120 + WAIT_GRACE

    def _run_task(self, host_ref, host_uuid, fn, args):
        """Run a plugin call as a XAPI task and wait for it (bounded): no HTTP request lasts
        longer than a poll. Ctrl-C cancels the operation (the plugin rolls back). A task gone
        before its answer was read (xapi's task GC destroys completed tasks beyond max_tasks:
        xen-api db_gc_util.ml timeout_tasks) is asked again by its op id, whose finished
        result the plugin keeps, until the deadline."""
        op_id = args["op_id"]
        deadline = time.monotonic() + self._wait_limit(host_ref)
        while True:
            try:
                return self._task_once(host_ref, host_uuid, fn, args, deadline)
            except _TaskGone:
                if time.monotonic() >= deadline:
                    raise self._timed_out(fn, op_id, host_uuid, "its task vanished")

    def _task_once(self, host_ref, host_uuid, fn, args, deadline):
        op_id = args["op_id"]
        try:
            task = self.x.Async.host.call_plugin(host_ref, PLUGIN, fn, args)
        except (socket.timeout, OSError) as e:
            raise self._timed_out(fn, op_id, host_uuid, e)
        try:
            try:
                rec = self._wait_task(task, op_id, deadline, fn, host_uuid)
            except KeyboardInterrupt:
                self._cancel(host_ref, op_id)
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

    def check_version(self, host_ref):
        """The plugin's version on a host, checked once per session and host."""
        if host_ref not in self._versions:
            info = self._raw_plugin(host_ref, "version", {})
            host_uuid = self._xapi(self.x.host.get_uuid, host_ref)
            try:
                major = int(str(info.get("api_level", "")).split(".")[0])
            except ValueError:
                major = None
            if major != REQUIRED_API[0]:
                raise errors.PluginIncompatible(
                    "host %s has xenvol plugin %s (API %s); this client %s needs API %d.x: %s"
                    % (host_uuid, info.get("version"), info.get("api_level"), _client_version(),
                       REQUIRED_API[0], _INSTALL_HINT), host=host_uuid,
                    details={"installed": info, "required_api": "%d.%d" % REQUIRED_API})
            self._versions[host_ref] = info
        return self._versions[host_ref]

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
        created, by_value = [], {}

        def make(value, field):
            # One secret per distinct value, so equal passwords stay equal.
            if value not in by_value:
                ref = self._xapi(self.x.secret.create, {"value": value,
                                                        "other_config": tags or {}})
                created.append(ref)
                by_value[value] = self._xapi(self.x.secret.get_uuid, ref)
            return by_value[value]
        try:
            info = secrets.rewrite(info, make, error)
        except Exception:
            self._drop_secrets(created)
            raise
        return info, created, secrets.Scrub(list(by_value))

    def _drop_secrets(self, created):
        """Destroy the secrets we made, unless a PBD still names one (an old XAPI that does
        not copy secrets into the PBD's own)."""
        if not created:
            return
        uuids = {}
        for ref in created:
            try:
                uuids[self.x.secret.get_uuid(ref)] = ref
            except XenAPI.Failure:
                pass
        in_use = set()
        for rec in self._xapi(self.x.PBD.get_all_records).values():
            in_use.update(v for v in rec["device_config"].values() if v in uuids)
        for uuid, ref in uuids.items():
            if uuid not in in_use:
                try:
                    self.x.secret.destroy(ref)
                except XenAPI.Failure:
                    pass

    def _with_secrets(self, connection_info, host_ref, fn, args):
        self.check_version(host_ref)
        # Tagged, so that the plugin consumes them and gc finds any a kill -9 left.
        expires = time.time() + self._wait_limit(host_ref) + SECRET_TTL_GRACE
        info, created, scrub = self._stash_secrets(connection_info, {
            "xenvol": "client", "xenvol-op": args["op_id"], "xenvol-expires": "%d" % expires})
        try:
            args = dict(args, connection_info=json.dumps(info))
            return self._plugin(host_ref, fn, args, scrub)
        finally:
            self._drop_secrets(created)

    # ------------------------------------------------------------------ the API
    def attach(self, connection_info, vm, mountpoint="autodetect", read_only=None, hotplug=True,
               op_id=None, placement=None):
        """Attach a volume to a VM (uuid or name); returns an Attachment. op_id: this
        operation's id (default: a new one); the same call with the same op_id returns the
        first one's result (after OperationTimedOut, say). placement: "host" (the SR plugged
        on the VM's host and the master) or "pool" (on every host); default: the hosts'
        xenvol.conf."""
        vm_ref = self._vm(vm)
        host = self.host_for_vm(vm_ref)
        args = {"vm_uuid": self.x.VM.get_uuid(vm_ref), "mountpoint": str(mountpoint),
                "hotplug": "true" if hotplug else "false", "op_id": _op_id(op_id)}
        if placement is not None:
            args["placement"] = _placement(placement)
        if read_only is not None:
            args["mode"] = "ro" if read_only else "rw"
        return Attachment(**self._with_secrets(connection_info, host, "attach_volume", args))

    def detach(self, vm=None, mountpoint=None, attachment=None, vdi=None, op_id=None):
        """Detach by VM and mount point, by Attachment, or every xenvol VBD of a VDI uuid.
        Returns the Attachments detached (empty when nothing was attached)."""
        if attachment is not None:
            vm_ref = self._vm(attachment.vm_uuid)
            args = {"vbd_uuid": attachment.vbd_uuid}
        elif vdi is not None:
            vdi_ref = self._xapi(self.x.VDI.get_by_uuid, vdi)
            vbds = self._xapi(self.x.VDI.get_VBDs, vdi_ref)
            vm_ref = self.x.VBD.get_VM(vbds[0]) if vbds else None
            args = {"vdi_uuid": vdi}
        elif vm is not None and mountpoint is not None:
            vm_ref = self._vm(vm)
            args = {"vm_uuid": self.x.VM.get_uuid(vm_ref), "mountpoint": str(mountpoint)}
        else:
            raise errors.InvalidArgument("detach: give vm and mountpoint, attachment, or vdi",
                                         details={"field": "mountpoint"})
        host = self.host_for_vm(vm_ref) if vm_ref else self._master()
        args["op_id"] = _op_id(op_id)
        out = self._plugin(host, "detach_volume", args)
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
        info, created, scrub = self._stash_secrets(connection_info)
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
            info, created, scrub = self._stash_secrets(connection_info)
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
