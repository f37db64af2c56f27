"""Install the pack on hosts over SSH (paramiko).

  xenvol pack install HOST... --iso PACK.iso [--key RPM-GPG-KEY-xenvol --import-key] [--sr UUID]
        [--user root] [--port 22] [--identity FILE] [--ssh-config FILE] [--known-hosts FILE]
        [--accept-new-host-keys]

HOST is resolved through ~/.ssh/config as ssh does (Host aliases, HostName, User, Port,
IdentityFile, ProxyJump, ProxyCommand); options given here win. Per host: verify the host key
against known_hosts (an unknown key is refused unless --accept-new-host-keys), upload the ISO
(and key) by SFTP, import the key if asked, run xe-install-supplemental-pack [--sr=UUID], then
check that the plugin answers with the pack's version, asking the host named by the host's own
/etc/xensource-inventory (not by the address we reached it at: NAT, jump hosts and storage
networks make that differ). Uploads and key imports run on all hosts in parallel; the installs
themselves run one host at a time, since every host's install goes through the pool master
(the master verifies the upload, so import the key on the master too)."""

import concurrent.futures
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ET
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

from .common import KEY_FILE, PackError, extract_iso, is_test_key

REMOTE_DIR = "/tmp"
IMPORT_KEY = "/opt/xensource/debug/import-update-key"
# progress(host, text): what a host's install is at.
ProgressFn = Callable[[str, str], None]
# (client, remote iso, remote key) of a host made ready to install.
Prepared = Tuple[Any, str, Optional[str]]


def _load_ssh_config(path: Optional[str]) -> Any:
    """paramiko's reading of the OpenSSH client config (~/.ssh/config unless given)."""
    import paramiko

    path = path or os.path.expanduser("~/.ssh/config")
    if not os.path.isfile(path):
        return None
    try:
        return paramiko.SSHConfig.from_path(path)
    except Exception as e:  # paramiko raises several types for a bad file
        raise PackError("%s: cannot parse: %s" % (path, e)) from e


class HostResult:
    def __init__(self, host: str) -> None:
        self.host = host
        self.ok = False
        self.version: Optional[str] = None
        self.message = ""
        self.steps: List[Dict[str, Any]] = []

    def to_dict(self) -> Dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "version": self.version,
            "message": self.message,
            "steps": self.steps,
        }


def pack_version(iso: str) -> Tuple[Optional[str], Optional[str]]:
    """(uuid, version) of a pack, read from its update.xml."""
    d = tempfile.mkdtemp(prefix="xv-")
    try:
        extract_iso(iso, d, only=["update.xml"])
        try:
            doc = ET.parse(os.path.join(d, "update.xml")).getroot()
        except ET.ParseError as e:
            raise PackError("%s: update.xml is not well-formed XML (%s)" % (iso, e)) from None
        return doc.get("uuid"), doc.get("version")
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Progress:
    """One status line per host, rewritten in place on a terminal, appended otherwise."""

    def __init__(self, hosts: Sequence[str], stream: Optional[IO[str]] = None) -> None:
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.hosts = list(hosts)
        self.state = dict((h, "waiting") for h in hosts)
        self.tty = self.stream.isatty()
        self.drawn = False

    def __call__(self, host: str, text: str) -> None:
        with self.lock:
            changed = self.state.get(host) != text
            self.state[host] = text
            if not changed:
                return
            if self.tty:
                if self.drawn:
                    self.stream.write("\x1b[%dA" % len(self.hosts))
                width = max(len(h) for h in self.hosts)
                for h in self.hosts:
                    self.stream.write("\x1b[2K%s  %s\n" % (h.ljust(width), self.state[h]))
                self.drawn = True
            else:
                self.stream.write("%s: %s\n" % (host, text))
            self.stream.flush()


class Installer:
    def __init__(
        self,
        iso: str,
        key: Optional[str] = None,
        import_key: bool = False,
        user: Optional[str] = None,
        port: Optional[int] = None,
        identity: Optional[str] = None,
        password: Optional[str] = None,
        known_hosts: Optional[str] = None,
        accept_new: bool = False,
        timeout: float = 60.0,
        remote_dir: str = REMOTE_DIR,
        progress: Optional[ProgressFn] = None,
        sr: Optional[str] = None,
        ssh_config: Optional[str] = None,
    ) -> None:
        if import_key and not key:
            raise PackError("--import-key needs --key (the pack's public key file)")
        if not os.path.isfile(iso):
            raise PackError("--iso %s: no such file" % iso)
        if key and not os.path.isfile(key):
            raise PackError("--key %s: no such file" % key)
        self.sr = sr
        self.ssh_config = _load_ssh_config(ssh_config)
        self.warnings: List[str] = []
        if key and shutil.which("gpg"):
            home = tempfile.mkdtemp(prefix="xv-")
            try:
                from .common import key_info, stop_agent

                if any(is_test_key(k["uid"]) for k in key_info(home, key)):
                    self.warnings.append(
                        "%s is the xenvol TEST key: hosts that import it accept any update "
                        "signed by it; use it on test hosts only" % key
                    )
            finally:
                stop_agent(home)
                shutil.rmtree(home, ignore_errors=True)
        self.iso = iso
        self.key = key
        self.import_key = import_key
        self.user = user
        self.port = port
        self.identity = identity
        self.password = password
        self.known_hosts = known_hosts
        self.accept_new = accept_new
        self.timeout = timeout
        self.remote_dir = remote_dir
        self.progress: ProgressFn = progress or (lambda host, text: None)
        self.uuid, self.version = pack_version(iso)
        self._serial = threading.Lock()

    # ---------------------------------------------------------------- SSH
    def _settings(
        self, host: str, user: Optional[str] = None, port: Optional[int] = None, top: bool = True
    ) -> Tuple[str, int, str, Any, Optional[Tuple[str, str]]]:
        """(hostname, port, user, identity files, proxy) for HOST, as ssh resolves them:
        command-line options first (for the target, not for jump hosts, as ssh -l/-p/-i),
        then ~/.ssh/config, then the defaults."""
        cfg = self.ssh_config.lookup(host) if self.ssh_config else {"hostname": host}
        hostname = cfg.get("hostname", host)
        port = port or (self.port if top else None) or int(cfg.get("port", 22))
        user = user or (self.user if top else None) or cfg.get("user", "root")
        identities = [self.identity] if self.identity and top else cfg.get("identityfile") or None
        proxy: Optional[Tuple[str, str]] = None
        if cfg.get("proxyjump") and cfg["proxyjump"].lower() != "none":
            proxy = ("jump", cfg["proxyjump"])
        elif cfg.get("proxycommand") and cfg["proxycommand"].lower() != "none":
            proxy = ("command", cfg["proxycommand"])
        return hostname, port, user, identities, proxy

    def _connect(
        self, host: str, depth: int = 0, user: Optional[str] = None, port: Optional[int] = None
    ) -> Any:
        import paramiko

        if depth > 4:
            raise PackError("ProxyJump chain too long at %s" % host)
        hostname, port, user, identities, proxy = self._settings(host, user, port, depth == 0)
        sock, jump = None, None
        if proxy and proxy[0] == "jump":
            # ProxyJump: ssh to the first jump host, then a direct-tcpip channel onwards.
            hops = proxy[1].split(",")
            jump_spec = hops[0]
            jump_user, _, jump_host = jump_spec.rpartition("@")
            jump_host, _, jump_port = jump_host.partition(":")
            jump = self._connect(
                jump_host, depth + 1, jump_user or None, int(jump_port) if jump_port else None
            )
            try:
                sock = jump.get_transport().open_channel(
                    "direct-tcpip", (hostname, port), ("127.0.0.1", 0)
                )
            except paramiko.SSHException as e:
                jump.close()
                raise PackError("SSH to %s through %s failed: %s" % (host, jump_spec, e)) from None
        elif proxy:
            sock = paramiko.ProxyCommand(
                proxy[1].replace("%h", hostname).replace("%p", str(port)).replace("%r", user)
            )
        client = paramiko.SSHClient()
        if self.known_hosts:
            if os.path.exists(self.known_hosts):
                client.load_host_keys(self.known_hosts)
        else:
            client.load_system_host_keys()
        # Never trust a host key silently: an unknown host is refused unless asked.
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if self.accept_new else paramiko.RejectPolicy()
        )
        explicit = bool(identities) or self.password is not None
        try:
            client.connect(
                hostname,
                port=port,
                username=user,
                key_filename=identities,
                password=self.password,
                timeout=self.timeout,
                sock=sock,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                look_for_keys=not explicit,
                allow_agent=not explicit,
            )
        except paramiko.SSHException as e:
            client.close()
            if jump:
                jump.close()
            raise PackError("SSH to %s failed: %s" % (host, e)) from None
        except OSError as e:
            client.close()
            if jump:
                jump.close()
            raise PackError("cannot reach %s:%d: %s" % (hostname, port, e)) from None
        if jump:
            client._xenvol_jump = jump  # closed with the client (see _close)
        if self.accept_new and self.known_hosts:
            client.save_host_keys(self.known_hosts)
        return client

    def _run(self, client: Any, command: str) -> Tuple[int, str, str]:
        chan = client.get_transport().open_session(timeout=self.timeout)
        chan.settimeout(max(self.timeout, 600))
        chan.exec_command(command)
        stdout, stderr = chan.makefile("rb"), chan.makefile_stderr("rb")
        out, err = stdout.read(), stderr.read()
        rc = int(chan.recv_exit_status())
        chan.close()
        return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def _must(self, client: Any, result: HostResult, what: str, command: str) -> str:
        rc, out, err = self._run(client, command)
        result.steps.append({"step": what, "rc": rc})
        if rc != 0:
            raise PackError("%s failed (exit %d): %s" % (what, rc, (err or out).strip()[-500:]))
        return out

    # ---------------------------------------------------------------- per host
    def prepare(self, host: str, result: HostResult) -> Prepared:
        """Connect, upload, import the key. Returns (client, remote iso, remote key)."""
        self.progress(host, "connecting")
        client = self._connect(host)
        # A directory of our own: never clobber or be clobbered by another upload. Files keep
        # their names: import-update-key stores the key under its file name, which is the name
        # update.xml gives yum.
        remote = "%s/xenvol-pack-%s" % (self.remote_dir, uuid.uuid4().hex[:12])
        remote_iso = "%s/%s" % (remote, os.path.basename(self.iso))
        remote_key = "%s/%s" % (remote, KEY_FILE) if self.key else None
        try:
            sftp = client.open_sftp()
            try:
                sftp.mkdir(remote, 0o700)
                size = os.path.getsize(self.iso)

                def uploaded(done: int, total: int) -> None:
                    self.progress(host, "uploading %d%%" % (100 * done // max(total or size, 1)))

                sftp.put(self.iso, remote_iso, callback=uploaded)
                if remote_key:
                    sftp.put(self.key, remote_key)
            finally:
                sftp.close()
            result.steps.append({"step": "upload", "rc": 0})
            if self.import_key and remote_key:
                self.progress(host, "importing the key")
                self._must(
                    client,
                    result,
                    "import-update-key",
                    "PATH=$PATH:%s %s %s"
                    % (
                        os.path.dirname(IMPORT_KEY),
                        os.path.basename(IMPORT_KEY),
                        shlex.quote(remote_key),
                    ),
                )
        except Exception:
            self._cleanup(client, remote)
            raise
        return client, remote_iso, remote_key

    def _cleanup(self, client: Any, remote: str) -> None:
        try:
            self._run(client, "rm -rf %s" % shlex.quote(remote))
        finally:
            client.close()
            if getattr(client, "_xenvol_jump", None):
                client._xenvol_jump.close()

    def finish(
        self, host: str, client: Any, remote_iso: str, remote_key: Optional[str], result: HostResult
    ) -> None:
        try:
            with self._serial:
                self.progress(host, "installing")
                self._must(
                    client,
                    result,
                    "xe-install-supplemental-pack",
                    "xe-install-supplemental-pack %s%s"
                    % (
                        "--sr=%s " % shlex.quote(self.sr) if self.sr else "",
                        shlex.quote(remote_iso),
                    ),
                )
            self.progress(host, "checking the plugin")
            # This host's uuid from its own inventory. A simulated dom0 (xapisim) keeps its
            # files under $XAPISIM_HOST_ROOT; on a real host that is unset and this is
            # /etc/xensource-inventory.
            out = self._must(
                client,
                result,
                "plugin version",
                '. "${XAPISIM_HOST_ROOT:-}/etc/xensource-inventory" && '
                'xe host-call-plugin host-uuid="$INSTALLATION_UUID" plugin=xenvol '
                "fn=version",
            )
            info = json.loads(out.strip().splitlines()[-1])
            result.version = info.get("version")
            if result.version != self.version:
                raise PackError(
                    "the plugin answers version %s, the pack is %s" % (result.version, self.version)
                )
            result.ok = True
            result.message = "xenvol %s installed (API %s)" % (
                result.version,
                info.get("api_level"),
            )
        finally:
            self._cleanup(client, os.path.dirname(remote_iso))

    def install(self, hosts: Sequence[str], parallel: int = 8) -> List[HostResult]:
        results = dict((h, HostResult(h)) for h in hosts)
        prepared: Dict[str, Prepared] = {}

        def prep(host: str) -> None:
            try:
                prepared[host] = self.prepare(host, results[host])
            except Exception as e:  # reported per host; the others go on
                results[host].message = str(e)
                self.progress(host, "FAILED: %s" % e)

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(prep, hosts))

        def fin(host: str) -> None:
            if host not in prepared:
                return
            try:
                self.finish(host, *(prepared[host] + (results[host],)))
                self.progress(host, "done: " + results[host].message)
            except Exception as e:  # reported per host; the others go on
                results[host].message = str(e)
                self.progress(host, "FAILED: %s" % e)

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(fin, hosts))
        return [results[h] for h in hosts]
