"""The simulated pool: hosts with their own dom0 roots, sessions, dispatch and test controls."""
import collections
import os
import shutil
import sys
import threading
import time
import uuid as uuidlib
import xmlrpc.client

from . import messages
from .db import Database, NULL
from .errors import XapiError

API_MAJOR, API_MINOR = "2", "21"
PRODUCT_VERSION = "8.3.0"


class Host(object):
    """Where one simulated host keeps its dom0 files, and how it is reached."""

    def __init__(self, ref, uuid, index, root, address):
        self.ref = ref
        self.uuid = uuid
        self.index = index
        self.root = root
        self.address = address

    def path(self, *parts):
        return os.path.join(self.root, *[p.lstrip("/") for p in parts])

    @property
    def plugins_dir(self):
        return self.path("etc/xapi.d/plugins")

    @property
    def socket_path(self):
        return self.path("var/lib/xcp/xapi")


class Controls(object):
    """Test controls: injected failures, latency, call counts, plugin argv log."""

    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        self.latency = {}
        self.counts = collections.Counter()
        self.plugin_argv = []

    def add_fault(self, method, error, nth=1, every=False, caller="any"):
        with self.lock:
            self.faults.append({"method": method, "error": [str(e) for e in error], "nth": int(nth),
                                "every": bool(every), "caller": caller, "seen": 0})

    def clear(self):
        with self.lock:
            self.faults = []
            self.latency = {}
            self.counts.clear()
            self.plugin_argv = []

    def on_call(self, method, caller):
        """Count the call; return (delay, error-or-None) for it."""
        with self.lock:
            self.counts[(method, caller)] += 1
            delay = self.latency.get(method, self.latency.get("*", 0.0))
            for rule in self.faults:
                if rule["method"] != method or rule["caller"] not in ("any", caller):
                    continue
                rule["seen"] += 1
                if rule["every"] or rule["seen"] == rule["nth"]:
                    return delay, XapiError(*rule["error"])
            return delay, None

    def count_table(self):
        with self.lock:
            out = {}
            for (method, caller), n in self.counts.items():
                out.setdefault(method, {})[caller] = n
            return out


class Simulator(object):
    def __init__(self, state_dir, hosts=1, vms=2, username="root", password=None,
                 addresses=None, plugin_timeout=300.0):
        self.state_dir = os.path.abspath(state_dir)
        self.username = username
        self.password = password or uuidlib.uuid4().hex[:16]
        self.db = Database()
        self.controls = Controls()
        self.plugin_timeout = plugin_timeout
        self.hosts = []
        self.sessions = {}
        self.pylib = os.path.join(self.state_dir, "pylib")
        from .sm import registry
        self.sm = registry.StorageManagers(self)
        addresses = addresses or ["127.0.0.%d" % (i + 1) for i in range(hosts)]
        self._seed(hosts, vms, addresses)
        self._install_pylib()
        self._install_dom0_bin()
        from .updates import Updates
        self.updates = Updates(self)

    # ---------------------------------------------------------------- seeding
    def _seed(self, nhosts, nvms, addresses):
        db = self.db
        for i in range(nhosts):
            root = os.path.join(self.state_dir, "h%d" % i)
            for d in ("etc/xapi.d/plugins", "var/lib/xcp", "var/log", "var/lock",
                      "var/run/sr-mount", "var/lib/xenvol", "etc/xenvol/drivers.d"):
                os.makedirs(os.path.join(root, d), exist_ok=True)
            huuid = str(uuidlib.uuid4())
            name = "xs%02d" % (i + 1)
            with open(os.path.join(root, "etc/xensource-inventory"), "w") as fh:
                fh.write("INSTALLATION_UUID='%s'\nPRODUCT_BRAND='XCP-ng'\n"
                         "PRODUCT_VERSION='%s'\n" % (huuid, PRODUCT_VERSION))
            ref = db.create("host", {
                "uuid": huuid, "name_label": name, "hostname": name, "address": addresses[i],
                "enabled": True, "API_version_major": API_MAJOR, "API_version_minor": API_MINOR,
                "API_version_vendor": "XenSource",
                "software_version": {"product_version": PRODUCT_VERSION, "product_brand": "XCP-ng",
                                     "platform_name": "XCP", "xapi": "26.1"},
                "iscsi_iqn": "iqn.2026-11.org.xenvol.sim:%s" % name,
                "other_config": {"iscsi_iqn": "iqn.2026-11.org.xenvol.sim:%s" % name},
                "memory_overhead": "0",
                "metrics": db.create("host_metrics", {"live": True,
                                                      "memory_total": str(64 << 30)}),
            })
            self.hosts.append(Host(ref, huuid, i, root, addresses[i]))
            dom0 = db.create("VM", {"name_label": "Control domain on host: %s" % name,
                                    "is_control_domain": True, "power_state": "Running",
                                    "resident_on": ref, "domid": "0", "is_a_template": False,
                                    "domain_type": "pv", "metrics": db.create("VM_metrics", {
                                        "current_domain_type": "pv"})})
            db.raw("host", ref)["control_domain"] = dom0
            local = db.create("SR", {"name_label": "Local storage", "type": "ext",
                                     "content_type": "user", "shared": False,
                                     "physical_size": str(64 << 30)})
            db.create("PBD", {"host": ref, "SR": local, "device_config": {"device": "/dev/sda3"},
                              "currently_attached": True})
            self.sm.backing(db.raw("SR", local)["uuid"])
        master = self.hosts[0].ref
        db.create("pool", {"name_label": "", "master": master, "default_SR": NULL})
        # Guest kinds: vm-1..vm-4 are PV (pygrub), half of them running; vm-5, vm-7, ... are
        # running HVM guests with PV drivers, vm-6, vm-8, ... running HVM guests without.
        # self.guest_agents holds what each guest's agent reports once it runs (VM_guest_metrics
        # fields); a VM without an entry reports nothing.
        self.guest_agents = {}
        for i in range(nvms):
            kind = "pv" if i < 4 else ("hvm-drivers" if (i - 4) % 2 == 0 else "hvm")
            running = i % 2 == 0 or kind != "pv"
            host = self.hosts[(i // 2) % nhosts]
            domain_type = "pv" if kind == "pv" else "hvm"
            vm = db.create("VM", {
                "name_label": "vm-%d" % (i + 1), "power_state": "Running" if running else "Halted",
                "resident_on": host.ref if running else NULL, "domid": str(i + 1) if running else "-1",
                "affinity": host.ref, "is_a_template": False, "domain_type": domain_type,
                "HVM_boot_policy": "" if kind == "pv" else "BIOS order",
                "HVM_boot_params": {} if kind == "pv" else {"order": "cd"},
                "PV_bootloader": "pygrub" if kind == "pv" else "",
                "memory_static_max": str(1 << 30),
                "memory_dynamic_max": str(1 << 30), "VCPUs_max": "1", "VCPUs_at_startup": "1",
                "metrics": db.create("VM_metrics", {
                    "current_domain_type": domain_type if running else "unspecified",
                    "hvm": running and kind != "pv"})})
            if kind != "hvm":
                self.guest_agents[vm] = {
                    "os_version": {"distro": "debian", "major": "12", "name": "Debian 12"},
                    "PV_drivers_version": {"major": "9", "minor": "4", "micro": "0"},
                    "PV_drivers_up_to_date": True, "PV_drivers_detected": True,
                    "other": {"feature-hotplug": "1"}, "live": True}
                if running:
                    db.raw("VM", vm)["guest_metrics"] = db.create(
                        "VM_guest_metrics", dict(self.guest_agents[vm]))
            local = self.local_sr(host.ref)
            sr_uuid = db.raw("SR", local)["uuid"]
            vdi_uuid = str(uuidlib.uuid4())
            vdi = db.create("VDI", {"uuid": vdi_uuid, "name_label": "vm-%d root" % (i + 1), "SR": local,
                                    "virtual_size": str(8 << 30), "type": "system", "managed": True,
                                    "location": vdi_uuid})
            self.sm.backing(sr_uuid)[vdi_uuid] = {"virtual_size": str(8 << 30)}
            db.create("VBD", {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                              "type": "Disk", "device": "xvda" if running else "",
                              "currently_attached": running, "empty": False})

    def install_plugins(self, tree):
        """Copy a plugins tree (the contents of an etc/xapi.d/plugins) onto every host."""
        for host in self.hosts:
            shutil.copytree(tree, host.plugins_dir, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    def local_sr(self, host_ref):
        for pbd in self.db.find("PBD", host=host_ref):
            sr = self.db.raw("PBD", pbd)["SR"]
            if self.db.raw("SR", sr)["name_label"] == "Local storage":
                return sr
        return NULL

    def _install_pylib(self):
        """The Python path plugins run with: our XenAPIPlugin and the XenAPI package."""
        import XenAPI
        os.makedirs(self.pylib, exist_ok=True)
        here = os.path.dirname(__file__)
        shutil.copy(os.path.join(here, "plugin_runtime", "XenAPIPlugin.py"), self.pylib)
        link = os.path.join(self.pylib, "XenAPI")
        if not os.path.exists(link):
            os.symlink(os.path.dirname(XenAPI.__file__), link)

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
            ref = self.db.create("session", {"this_host": host.ref, "auth_user_name": user,
                                             "originator": originator, "pool": pool,
                                             "is_local_superuser": True})
            self.sessions[ref] = host.ref
            return ref

    def end_session(self, ref):
        with self.db.lock:
            if self.sessions.pop(ref, None) is not None:
                self.db.destroy("session", ref)

    # ---------------------------------------------------------------- dispatch
    def handle(self, endpoint, body):
        """One XML-RPC request from an endpoint; returns the XML-RPC response bytes."""
        params, method = xmlrpc.client.loads(body, use_builtin_types=False)
        if method is None:
            raise ValueError("not a methodCall")
        try:
            if method.startswith("xapisim."):
                value = messages.admin(self, method[len("xapisim."):], params)
            else:
                value = self.call(endpoint, method, list(params))
            result = {"Status": "Success", "Value": "" if value is None else value}
        except XapiError as e:
            result = {"Status": "Failure", "ErrorDescription": e.description}
        return _response(result)

    def call(self, endpoint, method, params):
        caller = "client" if endpoint.transport == "tcp" else "plugin"
        cls, _, msg = method.partition(".")
        if cls.startswith("Async"):
            raise XapiError("MESSAGE_METHOD_UNKNOWN", method)
        impl, sig, has_session = messages.lookup(cls, msg)
        if impl is None:
            if params:
                self.check_session(params[0])
            raise XapiError("MESSAGE_METHOD_UNKNOWN", method)
        args = params[1:] if has_session else params
        required = [p for p in sig if p[2]]
        if len(args) < len(required) or len(args) > len(sig) or (has_session and not params):
            expected = len(required) if len(args) < len(required) else len(sig)
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", method, expected, len(args))
        for value, (name, typ, _req) in zip(args, sig):
            messages.check_type(value, typ, name)
        if endpoint.transport == "tcp" and endpoint.host.ref != self.master.ref:
            raise XapiError("HOST_IS_SLAVE", self.master.address)
        session = None
        if has_session:
            session = params[0]
            self.check_session(session)
        delay, fault = self.controls.on_call(method, caller)
        if delay:
            time.sleep(delay)
        if fault is not None:
            raise fault
        ctx = messages.Context(self, endpoint, session, caller)
        if msg in messages.UNLOCKED.get(cls, ()):
            return impl(ctx, *args)
        with self.db.lock:
            return impl(ctx, *args)

    def check_session(self, ref):
        if not isinstance(ref, str) or ref not in self.sessions:
            raise XapiError("SESSION_INVALID", ref)


class Endpoint(object):
    """Where a request came in: which host, over TCP or the host's unix socket."""

    def __init__(self, host, transport):
        self.host = host
        self.transport = transport


def _response(result):
    try:
        return xmlrpc.client.dumps((result,), methodresponse=True, allow_none=False).encode()
    except (TypeError, OverflowError) as e:
        err = {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", str(e)]}
        return xmlrpc.client.dumps((err,), methodresponse=True).encode()
