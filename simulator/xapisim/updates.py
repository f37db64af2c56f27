"""What a host does with a supplemental pack: update-upload verifies the signatures with the
master's gpg keyring (GOODSIG and TRUST_ULTIMATE, as xapi's Gpg module demands), update-apply
installs the `update` group's RPMs into that host's root with rpm, as yum would."""
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

from .errors import XapiError

GPG_HOME = "opt/xensource/gpg"
KEY_DIR = "etc/pki/rpm-gpg"


def _gpg_verify(home, path):
    if not os.path.isfile(path + ".asc"):
        return False
    p = subprocess.run(["gpg", "--homedir", home, "--batch", "--status-fd", "1", "--verify",
                        path + ".asc", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       universal_newlines=True)
    subprocess.call(["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return "[GNUPG:] GOODSIG" in p.stdout and "[GNUPG:] TRUST_ULTIMATE" in p.stdout


class Updates(object):
    def __init__(self, sim):
        self.sim = sim
        self.dir = os.path.join(sim.state_dir, "updates")
        self.known = {}      # uuid -> {"dir", "doc"}
        self.applied = {}    # uuid -> set of host uuids

    def upload(self, iso):
        if not os.path.isfile(iso):
            raise XapiError("INVALID_UPDATE", "cannot read %s" % iso)
        work = tempfile.mkdtemp(prefix="upd-", dir=_ensure(self.dir))
        p = subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", work],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            if p.returncode != 0:
                raise XapiError("INVALID_UPDATE", "the file is not an ISO image")
            doc_path = os.path.join(work, "update.xml")
            if not os.path.isfile(doc_path):
                raise XapiError("INVALID_UPDATE",
                                "missing update document (update.xml) in the package.")
            home = self.sim.master.path(GPG_HOME)
            for f in (doc_path, os.path.join(work, "repodata", "repomd.xml")):
                if not os.path.isdir(home) or not _gpg_verify(home, f):
                    raise XapiError("INVALID_UPDATE", "Invalid signature")
            doc = ET.parse(doc_path).getroot()
            uuid = doc.get("uuid")
            for attr in ("uuid", "name-label", "version"):
                if not doc.get(attr):
                    raise XapiError("INVALID_UPDATE", "missing <%s> in update.xml" % attr)
            if not (doc.findtext("name-description") or "").strip():
                raise XapiError("INVALID_UPDATE", "missing <name-description> in update.xml")
        except XapiError:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if uuid in self.known:
            # Another host uploaded it first; keep fresh files for this host's apply.
            shutil.rmtree(self.known[uuid]["dir"], ignore_errors=True)
            self.known[uuid] = {"dir": work, "doc": doc}
            raise XapiError("UPDATE_ALREADY_EXISTS", uuid)
        self.known[uuid] = {"dir": work, "doc": doc}
        return uuid

    def apply(self, uuid, host):
        if uuid not in self.known:
            raise XapiError("UUID_INVALID", "pool_update", uuid)
        if host.uuid in self.applied.get(uuid, set()):
            raise XapiError("UPDATE_ALREADY_APPLIED", uuid)
        work, doc = self.known[uuid]["dir"], self.known[uuid]["doc"]
        rpms = sorted(os.path.join(work, "Packages", n)
                      for n in os.listdir(os.path.join(work, "Packages")) if n.endswith(".rpm"))
        key = doc.get("key")
        if key:
            # yum runs with gpgcheck=1 and the key import-update-key put on this host.
            keyfile = host.path(KEY_DIR, key)
            if not os.path.isfile(keyfile):
                raise XapiError("UPDATE_APPLY_FAILED", "GPG key retrieval failed: [Errno 14] "
                                "file://%s not found" % ("/" + KEY_DIR + "/" + key))
            db = tempfile.mkdtemp(prefix="rpmdb-", dir=self.dir)
            try:
                subprocess.run(["rpm", "--dbpath", db, "--import", keyfile], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for r in rpms:
                    p = subprocess.run(["rpm", "--dbpath", db, "-K", r], stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, universal_newlines=True)
                    if p.returncode != 0 or "NOKEY" in p.stdout or "BAD" in p.stdout.upper():
                        raise XapiError("UPDATE_APPLY_FAILED", "Package %s is not signed with "
                                        "the update key" % os.path.basename(r))
            finally:
                shutil.rmtree(db, ignore_errors=True)
        p = subprocess.run(["rpm", "--force-debian", "--root", host.root, "--dbpath",
                            "/var/lib/rpm", "-U", "--replacepkgs", "--nodeps", "--noscripts",
                            "--nosignature"] + rpms, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        if p.returncode != 0:
            raise XapiError("UPDATE_APPLY_FAILED", p.stdout[-2000:])
        self.applied.setdefault(uuid, set()).add(host.uuid)

    def pool_clean(self, uuid):
        entry = self.known.get(uuid)
        if entry:
            shutil.rmtree(entry["dir"], ignore_errors=True)


def _ensure(d):
    os.makedirs(d, exist_ok=True)
    return d
