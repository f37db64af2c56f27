"""The simulated pool: hosts with their own dom0 roots, sessions, dispatch and test controls."""

import os
import shutil
import signal
import sys
import threading
import time
import uuid as uuidlib

from . import admin, api_event, api_task, messages, schema, wire
from .db import NULL, Database
from .errors import XapiError

API_MAJOR, API_MINOR = "2", "21"
ASYNC = "Async."
PRODUCT_VERSION = "8.3.0"


class Host:
    """Where one simulated host keeps its dom0 files, and how it is reached."""

    def __init__(self, ref, uuid, index, root, address):
        self.ref = ref
        self.uuid = uuid
        self.index = index
        self.root = root
        self.address = address
        # Seconds this host's clock is ahead of the machine's (xapisim.clock_offset).
        self.clock_offset = 0.0

    def path(self, *parts):
        return os.path.join(self.root, *[p.lstrip("/") for p in parts])

    @property
    def plugins_dir(self):
        return self.path("etc/xapi.d/plugins")

    @property
    def socket_path(self):
        return self.path("var/lib/xcp/xapi")


class Simulator:
    def __init__(
        self,
        state_dir,
        hosts=1,
        vms=2,
        username="root",
        password=None,
        addresses=None,
        dom0_python=None,
        sm_timing="fast",
    ):
        self.state_dir = os.path.abspath(state_dir)
        self.username = username
        self.password = password or uuidlib.uuid4().hex[:16]
        self.db = Database()
        self.controls = admin.Controls()
        self.tasks = api_task.Tasks(self)
        self.hosts = []
        self.sessions = {}
        from .sm import registry

        scale = registry.TIMINGS[sm_timing] if sm_timing in registry.TIMINGS else float(sm_timing)
        self.sm = registry.StorageManagers(self, scale)
        addresses = addresses or ["127.0.0.%d" % (i + 1) for i in range(hosts)]
        self._seed(hosts, vms, addresses)
        self.events = api_event.Events(self)
        self._install_dom0_python(dom0_python)
        self._install_dom0_bin()
        from .updates import Updates

        self.updates = Updates(self)
        self.stopping = threading.Event()
        threading.Thread(target=self._scanner, daemon=True).start()

    def _scanner(self):
        """xapi's SR scanning thread (xen-api ocaml/xapi/xapi_sr.ml scanning_thread: every 30 s)."""
        from .api_storage import background_scan

        while not self.stopping.wait(max(30 * self.sm.time_scale, 0.05)):
            background_scan(self)

    # ---------------------------------------------------------------- seeding
    def _seed(self, nhosts, nvms, addresses):
        db = self.db
        for i in range(nhosts):
            root = os.path.join(self.state_dir, "h%d" % i)
            for d in (
                "etc/xapi.d/plugins",
                "var/lib/xcp",
                "var/log",
                "var/lock",
                "var/run/sr-mount",
                "var/lib/xenvol",
                "etc/xenvol/drivers.d",
            ):
                os.makedirs(os.path.join(root, d), exist_ok=True)
            # dom0's dynamic linker cache, which the plugin's /etc would otherwise lack (the
            # machine's: its libraries are where the plugin sees them): without it every exec
            # searches the default paths, and ctypes.util.find_library runs gcc.
            if os.path.exists("/etc/ld.so.cache"):
                shutil.copyfile("/etc/ld.so.cache", os.path.join(root, "etc/ld.so.cache"))
            huuid = str(uuidlib.uuid4())
            with open(os.path.join(root, "boot_id"), "w") as fh:
                fh.write(str(uuidlib.uuid4()) + "\n")
            name = "xs%02d" % (i + 1)
            with open(os.path.join(root, "etc/xensource-inventory"), "w") as fh:
                fh.write(
                    "INSTALLATION_UUID='%s'\nPRODUCT_BRAND='XCP-ng'\n"
                    "PRODUCT_VERSION='%s'\n" % (huuid, PRODUCT_VERSION)
                )
            ref = db.create(
                "host",
                {
                    "uuid": huuid,
                    "name_label": name,
                    "hostname": name,
                    "address": addresses[i],
                    "enabled": True,
                    "API_version_major": API_MAJOR,
                    "API_version_minor": API_MINOR,
                    "API_version_vendor": "XenSource",
                    "software_version": {
                        "product_version": PRODUCT_VERSION,
                        "product_brand": "XCP-ng",
                        "platform_name": "XCP",
                        "xapi": "26.1",
                    },
                    "iscsi_iqn": "iqn.2026-11.org.xenvol.sim:%s" % name,
                    "other_config": {"iscsi_iqn": "iqn.2026-11.org.xenvol.sim:%s" % name},
                    "memory_overhead": "0",
                    "metrics": db.create(
                        "host_metrics", {"live": True, "memory_total": str(64 << 30)}
                    ),
                },
            )
            self.hosts.append(Host(ref, huuid, i, root, addresses[i]))
            dom0 = db.create(
                "VM",
                {
                    "name_label": "Control domain on host: %s" % name,
                    "is_control_domain": True,
                    "power_state": "Running",
                    "resident_on": ref,
                    "domid": "0",
                    "is_a_template": False,
                    "domain_type": "pv",
                    "metrics": db.create("VM_metrics", {"current_domain_type": "pv"}),
                },
            )
            db.raw("host", ref)["control_domain"] = dom0
            local = db.create(
                "SR",
                {
                    "name_label": "Local storage",
                    "type": "ext",
                    "content_type": "user",
                    "shared": False,
                    "physical_size": str(64 << 30),
                },
            )
            db.create(
                "PBD",
                {
                    "host": ref,
                    "SR": local,
                    "device_config": {"device": "/dev/sda3"},
                    "currently_attached": True,
                },
            )
            self.sm.backing(db.raw("SR", local)["uuid"])
        master = self.hosts[0].ref
        db.create("pool", {"name_label": "", "master": master, "default_SR": NULL})
        self._register_sms()
        # Guest kinds: vm-1..vm-4 are PV (pygrub), half of them running; vm-5, vm-7, ... are
        # running HVM guests with PV drivers, vm-6, vm-8, ... running HVM guests without.
        # self.guest_agents holds what each guest's agent reports once it runs (VM_guest_metrics
        # fields); a VM without an entry reports nothing.
        self.guest_agents = {}
        # Seconds from a VM's start to its guest agent's first report (api_vm._agent_reports).
        self.guest_agent_delay = 0.0
        for i in range(nvms):
            kind = "pv" if i < 4 else ("hvm-drivers" if (i - 4) % 2 == 0 else "hvm")
            running = i % 2 == 0 or kind != "pv"
            host = self.hosts[(i // 2) % nhosts]
            domain_type = "pv" if kind == "pv" else "hvm"
            vm = db.create(
                "VM",
                {
                    "name_label": "vm-%d" % (i + 1),
                    "power_state": "Running" if running else "Halted",
                    "resident_on": host.ref if running else NULL,
                    "domid": str(i + 1) if running else "-1",
                    "affinity": host.ref,
                    "is_a_template": False,
                    "domain_type": domain_type,
                    "HVM_boot_policy": "" if kind == "pv" else "BIOS order",
                    "HVM_boot_params": {} if kind == "pv" else {"order": "cd"},
                    "PV_bootloader": "pygrub" if kind == "pv" else "",
                    "memory_static_max": str(1 << 30),
                    "memory_dynamic_max": str(1 << 30),
                    "VCPUs_max": "1",
                    "VCPUs_at_startup": "1",
                    "metrics": db.create(
                        "VM_metrics",
                        {
                            "current_domain_type": domain_type if running else "unspecified",
                            "hvm": running and kind != "pv",
                        },
                    ),
                },
            )
            if kind != "hvm":
                self.guest_agents[vm] = {
                    "os_version": {"distro": "debian", "major": "12", "name": "Debian 12"},
                    "PV_drivers_version": {"major": "9", "minor": "4", "micro": "0"},
                    "PV_drivers_up_to_date": True,
                    "PV_drivers_detected": True,
                    "other": {"feature-hotplug": "1"},
                    "live": True,
                }
                if running:
                    db.raw("VM", vm)["guest_metrics"] = db.create(
                        "VM_guest_metrics", dict(self.guest_agents[vm])
                    )
            local = self.local_sr(host.ref)
            sr_uuid = db.raw("SR", local)["uuid"]
            vdi_uuid = str(uuidlib.uuid4())
            vdi = db.create(
                "VDI",
                {
                    "uuid": vdi_uuid,
                    "name_label": "vm-%d root" % (i + 1),
                    "SR": local,
                    "virtual_size": str(8 << 30),
                    "type": "system",
                    "managed": True,
                    "location": vdi_uuid,
                },
            )
            self.sm.backing(sr_uuid)[vdi_uuid] = {"virtual_size": str(8 << 30)}
            db.create(
                "VBD",
                {
                    "VM": vm,
                    "VDI": vdi,
                    "userdevice": "0",
                    "bootable": True,
                    "mode": "RW",
                    "type": "Disk",
                    "device": "xvda" if running else "",
                    "currently_attached": running,
                    "empty": False,
                },
            )

    def _register_sms(self):
        """One SM record per storage manager, as xapi registers each SM driver it finds at
        start (xen-api ocaml/xapi/xapi_sm.ml create_from_query_result: type lowercased,
        capabilities the feature names, features name -> version, 1 where the driver's
        CAPABILITIES give none; sm drivers/*SR.py DRIVER_INFO)."""
        for type_, driver in sorted(self.sm.drivers.items()):
            caps = [c.split("/")[0] for c in driver.capabilities]
            self.db.create(
                "SM",
                {
                    "type": type_,
                    "name_label": type_,
                    "name_description": "SR plugin %s (xapisim)" % type_,
                    "vendor": "xapisim",
                    "version": "1.0",
                    "required_api_version": "1.0",
                    "capabilities": caps,
                    "features": dict(
                        (c.split("/")[0], c.split("/")[1] if "/" in c else "1")
                        for c in driver.capabilities
                    ),
                    "driver_filename": "/opt/xensource/sm/%sSR" % type_,
                },
            )

    def unregister_sm(self, type_):
        """An SM driver gone from a host: xapi drops its record at the next start
        (xapi_sm.ml unregister_plugin) and an SR of that type has no driver to run
        (SR_UNKNOWN_DRIVER)."""
        with self.db.lock:
            refs = self.db.find("SM", type=type_)
            if not refs:
                raise XapiError("INVALID_VALUE", "type", type_)
            for ref in refs:
                self.db.destroy("SM", ref)
            self.sm.drivers.pop(type_, None)

    def install_plugins(self, tree):
        """Copy a plugins tree (the contents of an etc/xapi.d/plugins) onto every host."""
        for host in self.hosts:
            shutil.copytree(
                tree,
                host.plugins_dir,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )

    def local_sr(self, host_ref):
        for pbd in self.db.find("PBD", host=host_ref):
            sr = self.db.raw("PBD", pbd)["SR"]
            if self.db.raw("SR", sr)["name_label"] == "Local storage":
                return sr
        return NULL

    def _install_dom0_python(self, python):
        """How plugins run: in their host's dom0 view, under dom0's Python (plugins.Dom0);
        self.dom0 is None where no mount namespace can be made, and plugin calls then fail."""
        from . import plugins

        self.dom0 = plugins.dom0(self.state_dir, python)
        if self.dom0 is None:
            sys.stderr.write("xapisim: %s; host.call_plugin will fail\n" % plugins.NO_NAMESPACE)

    def _install_dom0_bin(self):
        """dom0 commands for a shell on a simulated host (XAPISIM_HOST_ROOT names the host):
        xe over the host's unix socket, xe-install-supplemental-pack, import-update-key."""
        self.dom0_bin = os.path.join(self.state_dir, "dom0-bin")
        os.makedirs(self.dom0_bin, exist_ok=True)
        here = os.path.join(os.path.dirname(__file__), "dom0_bin")
        for name in os.listdir(here):
            dest = os.path.join(self.dom0_bin, name)
            with open(os.path.join(here, name)) as src, open(dest, "w") as out:
                out.write(src.read().replace("@PYTHON@", sys.executable))
            os.chmod(dest, 0o755)

    # ---------------------------------------------------------------- lookup
    @property
    def master(self):
        return self.hosts[0]

    def host(self, ref):
        for h in self.hosts:
            if h.ref == ref:
                return h
        raise XapiError("HANDLE_INVALID", "host", ref)

    def host_by_uuid(self, uuid):
        for h in self.hosts:
            if h.uuid == uuid:
                return h
        raise XapiError("UUID_INVALID", "host", uuid)

    # ---------------------------------------------------------------- sessions
    def new_session(self, host, user, originator="", pool=False):
        with self.db.lock:
            ref = self.db.create(
                "session",
                {
                    "this_host": host.ref,
                    "auth_user_name": user,
                    "originator": originator,
                    "pool": pool,
                    "is_local_superuser": True,
                },
            )
            self.sessions[ref] = host.ref
            return ref

    def end_session(self, ref):
        with self.db.lock:
            if self.sessions.pop(ref, None) is not None:
                self.db.destroy("session", ref)
                self.events.session_deleted(ref)

    # ---------------------------------------------------------------- dispatch
    def handle(self, endpoint, body, json_rpc=False):
        """One request body, XML-RPC or JSON-RPC (xen-api ocaml/xapi/api_server.ml callback,
        jsoncallback); returns the response body. wire.RequestError, raised before dispatch,
        is for the transport to answer with HTTP 500."""
        if json_rpc:
            version, call_id, method, params = wire.json_call(body)

            def encode(success, contents):
                if success:
                    contents = _json_typed(method, contents)
                return wire.json_response(success, contents, version, call_id)
        else:
            method, params = wire.xml_call(body)
            # The xapisim.* control channel is no part of xapi: its ints go typed, <i8>.
            strict = method.startswith("xapisim.")

            def encode(success, contents):
                return wire.xml_response(success, contents, strict)

        if method == "system.listMethods":
            # gen_server.ml dispatch_call: every message's wire name, whatever the params
            # (no session); api_server.ml callback writes it bare over XML-RPC, with no
            # Status/Value struct around it.
            if json_rpc:
                return encode(True, messages.list_methods())
            return wire.xml_bare_response(messages.list_methods())
        try:
            if method.startswith("xapisim."):
                value = admin.call(self, method[len("xapisim.") :], params)
            else:
                value = self.call(endpoint, method, params)
            # gen_server.ml: a message without a result answers String "".
            return _response(encode, True, "" if value is None else value)
        except XapiError as e:
            return _response(encode, False, e.description)

    def call(self, endpoint, method, params):
        caller = "client" if endpoint.transport == "tcp" else "plugin"
        # xen-api ocaml/xapi/server_helpers.ml sync_ty_and_maybe_remove_prefix: the generated
        # dispatcher matches the name without "Async."; the task keeps the full wire name.
        is_async = method.startswith(ASYNC)
        name = method[len(ASYNC) :] if is_async else method
        cls, _, msg = name.partition(".")
        impl, sig, has_session = messages.lookup(cls, msg)
        if impl is None:
            if params:
                self.check_session(params[0])
            raise XapiError("MESSAGE_METHOD_UNKNOWN", name)
        args = params[1:] if has_session else params
        required = [p for p in sig if p[2]]
        if len(args) < len(required) or len(args) > len(sig) or (has_session and not params):
            expected = len(required) if len(args) < len(required) else len(sig)
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", name, expected, len(args))
        for value, (pname, typ, _req) in zip(args, sig):
            messages.check_type(value, typ, pname)
        if endpoint.transport == "tcp" and endpoint.host.ref != self.master.ref:
            raise XapiError("HOST_IS_SLAVE", self.master.address)
        session = None
        if has_session:
            session = params[0]
            self.check_session(session)
        has_async = messages.supports_async(cls, msg)
        if is_async and not has_async:
            # API.response_of_fault: Failure ["Fault"; text]
            raise XapiError("Fault", "No async mode for this operation (rpc: %s)" % name)
        delay, fault = self.controls.on_call(method, caller, (method, name) if is_async else None)
        ctx = messages.Context(self, endpoint, session, caller)
        names = (method, name)
        if caller == "plugin" and self.controls.kills:
            self._kill(names, endpoint, "before")

        def work():
            try:
                if msg in messages.UNLOCKED.get(cls, ()):
                    return impl(ctx, *args)
                with self.db.lock:
                    return impl(ctx, *args)
            finally:
                if caller == "plugin" and self.controls.kills:
                    self._kill(names, endpoint, "after")

        # context.ml of_http_req: a task in the database for messages with an async mode,
        # a dummy one for the rest and for the classes in datamodel.ml no_task_id_for.
        if not has_async or cls in api_task.NO_TASK_ID_FOR:
            ctx.task = api_task.dummy_ref(method)
            if not is_async:
                if delay:
                    time.sleep(delay)
                if fault is not None:
                    raise fault
                return work()
            threading.Thread(
                target=self._run_detached, args=(delay, fault, work), daemon=True
            ).start()
            return ctx.task
        with self.db.lock:
            ctx.task = self.tasks.make(method, session, endpoint.host.ref)
        cancellable = messages.cancellable(cls, msg)
        if is_async:
            # exec_with_context leaves the task for the client to read and destroy.
            return self.tasks.spawn(ctx.task, cancellable, delay, fault, work)
        try:
            return self.tasks.run(ctx.task, cancellable, delay, fault, work)
        finally:
            # Context.finally_destroy_context: a sync call's task goes when it returns.
            with self.db.lock:
                if self.db.exists("task", ctx.task):
                    self.db.destroy("task", ctx.task)

    def _kill(self, names, endpoint, when):
        """xapisim.kill_plugin: the calling plugin dies here (SIGKILL); its call is not
        answered."""
        rule = self.controls.kill_for(names, endpoint.host.uuid, when)
        if rule is None:
            return
        try:
            os.kill(rule["pid"] or endpoint.peer_pid, signal.SIGKILL)
        except (OSError, TypeError):
            pass
        if not rule["pid"]:
            raise XapiError("INTERNAL_ERROR", "xapisim: the caller was killed")

    # ---------------------------------------------------------------- host reboot
    def boot_id_file(self, host):
        """The host's kernel boot id, bind-mounted on /proc/sys/kernel/random/boot_id in its
        plugins' mount namespace."""
        return host.path("boot_id")

    def reboot(self, host):
        """What a host reboot leaves for xenvol's recovery to meet: a new boot id, and every
        plugin process of the host gone (SIGKILL). Its files (/var, /etc) are kept. Not
        modelled: xapi restarting, PBDs replugged, VMs resident on the host halted."""
        with open(self.boot_id_file(host), "w") as fh:
            fh.write(str(uuidlib.uuid4()) + "\n")
        from . import plugins

        plugins.kill_host(host)

    @staticmethod
    def _run_detached(delay, fault, work):
        if delay:
            time.sleep(delay)
        if fault is None:
            try:
                work()
            except XapiError:
                pass

    def check_session(self, ref):
        if not isinstance(ref, str) or ref not in self.sessions:
            raise XapiError("SESSION_INVALID", ref)


class Endpoint:
    """Where a request came in: which host, over TCP or the host's unix socket (and then the
    calling process's pid)."""

    def __init__(self, host, transport, peer_pid=None):
        self.host = host
        self.transport = transport
        self.peer_pid = peer_pid


def _response(encode, success, contents):
    try:
        return encode(success, contents)
    except (TypeError, ValueError, OverflowError) as e:  # a value the wire cannot carry
        return encode(False, ["INTERNAL_ERROR", str(e)])


def _json_typed(method, value):
    """The database keeps ints in their XML-RPC form, a decimal string (xapi's Int goes out as
    bare text). JSON-RPC writes an Int as a number (ocaml-rpc jsonrpc.ml rpc_to_json), so
    int-typed results and record fields become ints here. (Event snapshots are typed
    where they are made, api_event.py.)"""
    cls, _, msg = method.partition(".")
    if cls not in schema.SCHEMA:
        return value
    spec = schema.SCHEMA[cls]["messages"].get(msg)
    kind = spec["result"] if spec else None
    if msg.startswith("get_") and kind is None:
        kind = schema.field_kind(cls, msg[4:])
    if kind == "int":
        return int(value)
    ints = [f[0] for f in schema.fields(cls) if f[1] == "int"]

    def record(rec):
        return dict((k, int(v) if k in ints else v) for k, v in rec.items())

    if msg == "get_record" or kind == "%s record" % cls:
        return record(value)
    if msg == "get_all_records":
        return dict((ref, record(rec)) for ref, rec in value.items())
    return value
