"""Shared fixtures: a simulated pool served over the real wire, and real storage peers."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import xmlrpc.client

import pytest
import XenAPI

from xapisim import cli
from xapisim.peers import ganesha, gluster, samba, tgt

# Parallel workers, each in its own namespace, and the `slow` mark (tests/suite_plugin.py).
pytest_plugins = ("suite_plugin",)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(REPO, "dom0_plugins", "etc", "xapi.d", "plugins")
# The plugin's API level as its version.py says (tests that edit it on a host replace this).
with open(os.path.join(PLUGINS, "xenvol_dom0", "version.py")) as _fh:
    API_LEVEL = re.search(r'^API_LEVEL = "([0-9.]+)"', _fh.read(), re.M).group(1)

# dom0's Python for plugins: the CPython 3.6 env `make deps` builds where a python3.6 exists
# (the simulators started here, in process or as `xapisim serve`, inherit the variable).
DOM0_PYTHON = os.path.join(REPO, ".venv-dom0", "bin", "python3")
if "XAPISIM_DOM0_PYTHON" not in os.environ and os.path.exists(
    os.path.join(REPO, ".venv-dom0", ".installed")
):
    os.environ["XAPISIM_DOM0_PYTHON"] = DOM0_PYTHON

# The client keeps pool masters' host refs in the user's cache (xenvol/hostcache.py): one of
# this run's own, never the user's, and gone with the run.
_CACHE_HOME = tempfile.TemporaryDirectory(prefix="xenvol-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE_HOME.name
os.environ.pop("XENVOL_HOST_CACHE", None)
# Every Client reads the certificates the CLI pinned (xenvol/trust.py): this run's, too.
_CONFIG_HOME = tempfile.TemporaryDirectory(prefix="xenvol-test-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG_HOME.name


def plugin_python():
    """(interpreter, version) the plugins run under; version "" when it cannot run."""
    from xapisim import plugins

    python = os.environ.get("XAPISIM_DOM0_PYTHON") or plugins._default_python()
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            stdout=subprocess.PIPE,
            text=True,
        ).stdout.strip()
    except OSError:
        out = ""
    return python, out


def pytest_terminal_summary(terminalreporter):
    python, version = plugin_python()
    terminalreporter.write_line("plugins ran under dom0 python %s (%s)" % (version or "?", python))


class Pool:
    """A running simulator plus helpers to talk to it as a client would."""

    def __init__(self, hosts=3, vms=4, plugins=None, tls=None, sm_timing="fast"):
        # Short paths: a unix socket path must stay under 108 bytes.
        self.state_dir = tempfile.mkdtemp(prefix="xs-", dir="/tmp")
        self.sim, self.servers, self.info = cli.start(
            hosts, vms, state_dir=self.state_dir, plugins=plugins, tls=tls, sm_timing=sm_timing
        )
        self.url = self.info["url"]
        self._sessions = []

    def session(self, url=None):
        s = XenAPI.Session(url or self.url, ignore_ssl=True)
        s.login_with_password(self.info["user"], self.info["password"], "2.21", "tests")
        self._sessions.append(s)
        return s

    @property
    def admin(self):
        import ssl

        proxy = xmlrpc.client.ServerProxy(self.url, context=ssl._create_unverified_context())

        class Admin:
            def __getattr__(_self, name):
                def call(*args):
                    r = getattr(proxy, "xapisim." + name)(*args)
                    assert r["Status"] == "Success", r
                    return r["Value"]

                return call

        return Admin()

    def host(self, i):
        return self.sim.hosts[i]

    def close(self):
        for s in self._sessions:
            try:
                s.xenapi.session.logout()
            except Exception:
                pass
        self.servers.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


@pytest.fixture
def pool():
    p = Pool()
    yield p
    p.close()


@pytest.fixture
def xapi(pool):
    """A logged-in XenAPI proxy (session.xenapi) on the pool master."""
    return pool.session().xenapi


def _peers_reason():
    if os.environ.get("XENVOL_PRIVATE_NETNS") != "1":
        return "real storage peers run only in a private network namespace (use make test as root)"
    for tool in ("tgtd", "tgtadm", "ganesha.nfsd", "rpcbind", "qemu-img"):
        if not shutil.which(tool):
            return "%s is not installed (tools/install-debian-deps)" % tool
    return None


class Peers:
    """A userspace iSCSI target and NFS server on 127.0.0.1, shared by a test session."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.iscsi = tgt.Target(os.path.join(workdir, "tgt")).start()
        self.nfs = ganesha.Server(os.path.join(workdir, "nfs"))
        self.nfs_export = self.nfs.add_export("/srv")
        self.nfs.start()
        self._iqns = 0
        self._iscsi6 = None
        self._smb = None
        self._gluster = None
        self._gluster_refused = None

    SMB_USER, SMB_PASSWORD = "svc-xenvol", "Smb-Pass-4417"

    @property
    def smb(self):
        """A real smbd on 127.0.0.1:445 with share `vols` (user SMB_USER), started on first
        use; smb_share is the local directory behind it."""
        if self._smb is None:
            if not shutil.which("smbd"):
                pytest.skip("smbd is not installed (tools/install-debian-deps)")
            server = samba.Server(os.path.join(self.workdir, "smb"))
            self.smb_share = server.add_share("vols")
            self._smb = server.add_user(self.SMB_USER, self.SMB_PASSWORD).start()
        return self._smb

    GLUSTER_VOLUME = "gv0"

    @property
    def gluster(self):
        """A real glusterd on 127.0.0.2:24007 (it refuses bricks on 127.0.0.1) serving the
        started volume GLUSTER_VOLUME, started on first use; skips where it cannot start."""
        if self._gluster is None:
            if self._gluster_refused is None:
                server = gluster.Server(os.path.join(self.workdir, "gluster"))
                try:
                    self._gluster = server.start().add_volume(self.GLUSTER_VOLUME)
                except (gluster.GlusterError, OSError, subprocess.SubprocessError) as e:
                    server.stop()
                    self._gluster_refused = "glusterd cannot serve a volume here: %s" % e
            if self._gluster is None:
                pytest.skip(self._gluster_refused)
        return self._gluster

    @property
    def iscsi6(self):
        """A second target daemon, on [::1], started on first use."""
        if self._iscsi6 is None:
            self._iscsi6 = tgt.Target(
                os.path.join(self.workdir, "tgt6"), address="::1", control=self.iscsi.control + 1
            ).start()
        return self._iscsi6

    def new_target(self, luns=(1,), chap=None, size_mb=8, mutual=None, daemon=None):
        """A fresh target with LUNs; returns its IQN."""
        daemon = daemon or self.iscsi
        self._iqns += 1
        iqn = "iqn.2026-11.org.xenvol.test:t%d-%d" % (os.getpid(), self._iqns)
        daemon.add_target(iqn)
        for lun in luns:
            daemon.add_lun(iqn, lun, size_mb)
        if chap:
            daemon.require_chap(iqn, *chap)
        if mutual:
            daemon.mutual_chap(iqn, *mutual)
        return iqn

    def iscsi_info(self, iqn, lun=1, chap=None, secret_uuid=None, **data):
        """An iscsi connection_info for a LUN of this run's target; chap=(user, password),
        the password inline or as the XAPI secret secret_uuid."""
        d = {"target_portal": self.iscsi.portal, "target_iqn": iqn, "target_lun": lun}
        if chap:
            d.update(auth_method="CHAP", auth_username=chap[0])
            if secret_uuid:
                d["auth_password_secret"] = secret_uuid
            else:
                d["auth_password"] = chap[1]
        d.update(data)
        return {"driver_volume_type": "iscsi", "data": d}

    def stop(self):
        if self._gluster is not None:
            self._gluster.stop()
        if self._smb is not None:
            self._smb.stop()
        self.nfs.stop()
        if self._iscsi6 is not None:
            self._iscsi6.stop()
        self.iscsi.stop()


@pytest.fixture(scope="session")
def peers():
    reason = _peers_reason()
    if reason:
        pytest.skip(reason)
    workdir = tempfile.mkdtemp(prefix="xs-peers-", dir="/tmp")
    p = Peers(workdir)
    yield p
    p.stop()
    shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------- the xenvol plugin
FAST_SETTINGS = {
    "lun_rescan_delays": [0.1, 0.2],
    "unplug_retry_delay": 0.05,
    "unplug_attempts": 4,
    "lock_timeout": 60,
}


def plugin_pool(**kw):
    p = Pool(plugins=PLUGINS, **kw)
    for h in p.sim.hosts:
        with open(os.path.join(h.root, "etc/xenvol/xenvol.conf"), "w") as fh:
            json.dump(FAST_SETTINGS, fh)
    return p


@pytest.fixture
def ppool():
    """A pool with the xenvol plugin installed on every host (fast retry settings)."""
    p = plugin_pool()
    yield p
    p.close()


class PluginError(Exception):
    def __init__(self, details):
        Exception.__init__(self, details)
        self.code = details[0]
        self.message = details[1] if len(details) > 1 else ""
        self.details = (
            json.loads(details[2]) if len(details) > 2 and details[2].startswith("{") else {}
        )


def plugin(xapi, host, fn, **args):
    """Call a xenvol function on a host; dict/list args are sent as JSON."""
    wire = dict(
        (k, json.dumps(v) if isinstance(v, (dict, list)) else str(v)) for k, v in args.items()
    )
    try:
        return json.loads(xapi.host.call_plugin(host.ref, "xenvol", fn, wire))
    except XenAPI.Failure as f:
        raise PluginError(f.details) from None


def state(pool):
    """The pool's objects minus the noise of calls (nothing but real state)."""
    return pool.admin.snapshot()
