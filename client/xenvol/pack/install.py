"""Install the pack on hosts over SSH (paramiko).

  xenvol pack install HOST... --iso PACK.iso [--key RPM-GPG-KEY-xenvol --import-key]
        [--user root] [--port 22] [--identity FILE] [--known-hosts FILE] [--accept-new-host-keys]

Per host: verify the host key against known_hosts (an unknown key is refused unless
--accept-new-host-keys says otherwise), upload the ISO (and key) by SFTP, import the key if
asked, run xe-install-supplemental-pack, then check that the plugin answers with the pack's
version. Uploads and key imports run on all hosts in parallel; the installs themselves run one
host at a time, since every host's install goes through the pool master (the master verifies
the upload, so import the key on the master too)."""
import concurrent.futures
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ET

from .common import KEY_FILE, PackError

REMOTE_DIR = "/tmp"
IMPORT_KEY = "/opt/xensource/debug/import-update-key"


class HostResult(object):
    def __init__(self, host):
        self.host = host
        self.ok = False
        self.version = None
        self.message = ""
        self.steps = []

    def to_dict(self):
        return {"host": self.host, "ok": self.ok, "version": self.version,
                "message": self.message, "steps": self.steps}


def pack_version(iso):
    """(uuid, version) of a pack, read from its update.xml."""
    d = tempfile.mkdtemp(prefix="xv-")
    try:
        p = subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract",
                            "/update.xml", os.path.join(d, "update.xml")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise PackError("%s is not a pack ISO (no update.xml)" % iso)
        doc = ET.parse(os.path.join(d, "update.xml")).getroot()
        return doc.get("uuid"), doc.get("version")
    finally:
        subprocess.call(["rm", "-rf", d])


class Progress(object):
    """One status line per host, rewritten in place on a terminal, appended otherwise."""

    def __init__(self, hosts, stream=None):
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.hosts = list(hosts)
        self.state = dict((h, "waiting") for h in hosts)
        self.tty = self.stream.isatty()
        self.drawn = False

    def __call__(self, host, text):
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


class Installer(object):
    def __init__(self, iso, key=None, import_key=False, user="root", port=22, identity=None,
                 password=None, known_hosts=None, accept_new=False, timeout=60.0,
                 remote_dir=REMOTE_DIR, progress=None):
        if import_key and not key:
            raise PackError("--import-key needs --key (the pack's public key file)")
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
        self.progress = progress or (lambda host, text: None)
        self.uuid, self.version = pack_version(iso)
        self._serial = threading.Lock()

    # ---------------------------------------------------------------- SSH
    def _connect(self, host):
        import paramiko
        client = paramiko.SSHClient()
        if self.known_hosts:
            if os.path.exists(self.known_hosts):
                client.load_host_keys(self.known_hosts)
        else:
            client.load_system_host_keys()
        # Never trust a host key silently: an unknown host is refused unless asked.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if self.accept_new
                                           else paramiko.RejectPolicy())
        try:
            client.connect(host, port=self.port, username=self.user, key_filename=self.identity,
                           password=self.password, timeout=self.timeout,
                           banner_timeout=self.timeout, auth_timeout=self.timeout,
                           look_for_keys=self.identity is None and self.password is None,
                           allow_agent=self.identity is None and self.password is None)
        except paramiko.SSHException as e:
            client.close()
            raise PackError("SSH to %s failed: %s" % (host, e))
        except (socket.error, OSError) as e:
            client.close()
            raise PackError("cannot reach %s:%d: %s" % (host, self.port, e))
        if self.accept_new and self.known_hosts:
            client.save_host_keys(self.known_hosts)
        return client

    def _run(self, client, command):
        chan = client.get_transport().open_session(timeout=self.timeout)
        chan.settimeout(max(self.timeout, 600))
        chan.exec_command(command)
        out, err = b"", b""
        stdout, stderr = chan.makefile("rb"), chan.makefile_stderr("rb")
        out, err = stdout.read(), stderr.read()
        rc = chan.recv_exit_status()
        chan.close()
        return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def _must(self, client, result, what, command):
        rc, out, err = self._run(client, command)
        result.steps.append({"step": what, "rc": rc})
        if rc != 0:
            raise PackError("%s failed (exit %d): %s" % (what, rc, (err or out).strip()[-500:]))
        return out

    # ---------------------------------------------------------------- per host
    def prepare(self, host, result):
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

                def uploaded(done, total):
                    self.progress(host, "uploading %d%%" % (100 * done // max(total or size, 1)))
                sftp.put(self.iso, remote_iso, callback=uploaded)
                if remote_key:
                    sftp.put(self.key, remote_key)
            finally:
                sftp.close()
            result.steps.append({"step": "upload", "rc": 0})
            if self.import_key:
                self.progress(host, "importing the key")
                self._must(client, result, "import-update-key",
                           "PATH=$PATH:%s %s %s" % (os.path.dirname(IMPORT_KEY),
                                                    os.path.basename(IMPORT_KEY),
                                                    shlex.quote(remote_key)))
        except Exception:
            self._cleanup(client, remote)
            raise
        return client, remote_iso, remote_key

    def _cleanup(self, client, remote):
        try:
            self._run(client, "rm -rf %s" % shlex.quote(remote))
        finally:
            client.close()

    def finish(self, host, client, remote_iso, remote_key, result):
        try:
            with self._serial:
                self.progress(host, "installing")
                self._must(client, result, "xe-install-supplemental-pack",
                           "xe-install-supplemental-pack %s" % shlex.quote(remote_iso))
            self.progress(host, "checking the plugin")
            address = client.get_transport().getpeername()[0]
            out = self._must(client, result, "plugin version",
                             "xe host-call-plugin host-uuid=$(xe host-list address=%s params=uuid "
                             "--minimal) plugin=xenvol fn=version" % shlex.quote(address))
            info = json.loads(out.strip().splitlines()[-1])
            result.version = info.get("version")
            if result.version != self.version:
                raise PackError("the plugin answers version %s, the pack is %s"
                                % (result.version, self.version))
            result.ok = True
            result.message = "xenvol %s installed (API %s)" % (result.version,
                                                               info.get("api_level"))
        finally:
            self._cleanup(client, os.path.dirname(remote_iso))

    def install(self, hosts, parallel=8):
        results = dict((h, HostResult(h)) for h in hosts)
        prepared = {}

        def prep(host):
            try:
                prepared[host] = self.prepare(host, results[host])
            except Exception as e:  # reported per host; the others go on
                results[host].message = str(e)
                self.progress(host, "FAILED: %s" % e)

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(prep, hosts))

        def fin(host):
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
