"""What a host does with a supplemental pack, following xen-api:

- update-upload (ocaml/xapi/xapi_pool_update.ml introduce/extract_update_info): the signatures
  of update.xml and repomd.xml checked with the master's gpg keyring (GOODSIG and
  TRUST_ULTIMATE, ocaml/xapi/gpg.ml); a second upload of an update whose files are still
  there is UPDATE_ALREADY_EXISTS; after pool-clean the same update is simply found again.
- update-precheck (python3/extensions/pool_update.precheck): installation-size against dom0's
  free space, then the `control` package installed (as a test) against the host's installed
  packages: an unmet version requirement is UPDATE_PRECHECK_FAILED_WRONG_SERVER_VERSION.
- update-apply (python3/extensions/pool_update.apply): UPDATE_ALREADY_APPLIED first, then the
  precheck, then the RPMs installed with their Requires resolved against the host's rpmdb
  (yum would refuse the transaction) and, when update.xml has `key`, their signatures checked
  with the key in /etc/pki/rpm-gpg (gpgcheck=1). Applied means /var/update/applied/<uuid>
  exists on the host (xapi_pool_update.ml resync_host reads that directory).

A simulated dom0's rpmdb starts with what a real one has that the pack can depend on:
xcp-ng-release (product-version from /etc/xensource-inventory), xapi-core and python3."""

import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

from .errors import XapiError

GPG_HOME = "opt/xensource/gpg"
KEY_DIR = "etc/pki/rpm-gpg"
APPLIED = "var/update/applied"
# XCP-ng's platform version for each product version (xcp-ng-release Provides).
PLATFORM = {"8.2.1": "3.2.1", "8.3.0": "3.4.0"}

_BASE_SPEC = """Name: dom0-base
Version: 1
Release: 1
Summary: simulated dom0 packages
License: none
BuildArch: noarch
AutoReqProv: no
%%description
simulated dom0
%%package -n xcp-ng-release
Summary: release
Version: %(product)s
Provides: product-brand = XCP-ng
Provides: product-version = %(product)s
Provides: platform-name = XCP
Provides: platform-version = %(platform)s
%%description -n xcp-ng-release
release
%%package -n xapi-core
Summary: xapi
Version: 25.0.0
%%description -n xapi-core
xapi
%%package -n python3
Summary: python
Version: 3.6.8
%%description -n python3
python
%%files -n xcp-ng-release
%%files -n xapi-core
%%files -n python3
"""


def _gpg_verify(home, path):
    if not os.path.isfile(path + ".asc"):
        return False
    p = subprocess.run(
        ["gpg", "--homedir", home, "--batch", "--status-fd", "1", "--verify", path + ".asc", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    subprocess.call(
        ["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return "[GNUPG:] GOODSIG" in p.stdout and "[GNUPG:] TRUST_ULTIMATE" in p.stdout


def _rpm(host, *args):
    return subprocess.run(
        ["rpm", "--force-debian", "--root", host.root, "--dbpath", "/var/lib/rpm"] + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _inventory(host):
    values = {}
    with open(host.path("etc/xensource-inventory")) as fh:
        for line in fh:
            k, _, v = line.strip().partition("=")
            values[k] = v.strip("'")
    return values


class Updates:
    def __init__(self, sim):
        self.sim = sim
        self.dir = os.path.join(sim.state_dir, "updates")
        self.known = {}  # uuid -> {"dir": files (None once pool-clean destroyed them), "doc"}

    # ------------------------------------------------------------------ upload
    def upload(self, iso, sr_uuid=None):
        if sr_uuid:
            self.sim.db.by_uuid("SR", sr_uuid)  # UUID_INVALID for an unknown SR, as xe's lookup
        if not os.path.isfile(iso):
            raise XapiError("INVALID_UPDATE", "cannot read %s" % iso)
        work = tempfile.mkdtemp(prefix="upd-", dir=_ensure(self.dir))
        p = subprocess.run(
            ["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", work],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            if p.returncode != 0:
                raise XapiError("INVALID_UPDATE", "the file is not an ISO image")
            doc_path = os.path.join(work, "update.xml")
            if not os.path.isfile(doc_path):
                raise XapiError(
                    "INVALID_UPDATE", "missing update document (update.xml) in the package."
                )
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
            entry = self.known.get(uuid)
            # xapi_pool_update.ml introduce: the same update with its VDI still present is
            # UPDATE_ALREADY_EXISTS (xe-install-supplemental-pack then aborts); with the VDI
            # gone (pool-clean), the update is found again and given the new one.
            if entry and entry["dir"]:
                raise XapiError("UPDATE_ALREADY_EXISTS", uuid)
        except XapiError:
            shutil.rmtree(work, ignore_errors=True)
            raise
        self.known[uuid] = {"dir": work, "doc": doc}
        return uuid

    def _entry(self, uuid):
        if uuid not in self.known:
            raise XapiError("UUID_INVALID", "pool_update", uuid)
        return self.known[uuid]

    # ------------------------------------------------------------------ host state
    def hosts(self, uuid):
        """Hosts the update is applied on: those with /var/update/applied/<uuid>."""
        self._entry(uuid)
        return [h.uuid for h in self.sim.hosts if os.path.isfile(h.path(APPLIED, uuid))]

    def _seed(self, host):
        """The host's rpmdb holds the dom0 packages a pack can require (once)."""
        if _rpm(host, "-q", "xcp-ng-release").returncode == 0:
            return
        product = _inventory(host).get("PRODUCT_VERSION", "8.3.0")
        top = os.path.join(_ensure(self.dir), "dom0-base-%s" % product)
        rpms = os.path.join(top, "RPMS", "noarch")
        if not os.path.isdir(rpms):
            os.makedirs(os.path.join(top, "SPECS"), exist_ok=True)
            spec = os.path.join(top, "SPECS", "base.spec")
            with open(spec, "w") as fh:
                fh.write(
                    _BASE_SPEC % {"product": product, "platform": PLATFORM.get(product, "3.4.0")}
                )
            p = subprocess.run(
                ["rpmbuild", "-bb", "--nodeps", "--define", "_topdir %s" % top, spec],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if p.returncode != 0:
                raise XapiError("INTERNAL_ERROR", "simulated dom0 packages: " + p.stdout[-500:])
        p = _rpm(
            host,
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--nosignature",
            *[os.path.join(rpms, n) for n in sorted(os.listdir(rpms))],
        )
        if p.returncode != 0:
            raise XapiError("INTERNAL_ERROR", "simulated dom0 packages: " + p.stdout[-500:])

    def _packages(self, work):
        """{name: path} of the update's RPMs."""
        out = {}
        for n in sorted(os.listdir(os.path.join(work, "Packages"))):
            if n.endswith(".rpm"):
                path = os.path.join(work, "Packages", n)
                name = subprocess.run(
                    ["rpm", "-qp", "--nosignature", "--qf", "%{NAME}", path],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                ).stdout
                out[name] = path
        return out

    # ------------------------------------------------------------------ precheck
    def precheck(self, uuid, host):
        """xen-api python3/extensions/pool_update.precheck."""
        entry = self._entry(uuid)
        doc, label = entry["doc"], entry["doc"].get("name-label")
        if not entry["dir"]:
            raise XapiError("CANNOT_FIND_UPDATE")
        st = os.statvfs(host.root)
        available = st.f_frsize * st.f_bavail
        try:
            required = int(doc.get("installation-size", "0"))
        except ValueError:
            raise XapiError(
                "INVALID_UPDATE", "Issue with <installation-size> in update.xml"
            ) from None
        if required > available:
            raise XapiError(
                "UPDATE_PRECHECK_FAILED_OUT_OF_SPACE", label, str(available), str(required)
            )
        control = doc.get("control")
        if not control:
            return "ok"  # no control package: the real precheck passes any host
        self._seed(host)
        rpm = self._packages(entry["dir"]).get(control)
        if not rpm:
            raise XapiError(
                "UPDATE_PRECHECK_FAILED_UNKNOWN_ERROR", label, "No match for argument: %s" % control
            )
        # `dnf install CONTROL` from the update's repository: an installed package that the
        # new control package would break (an older pack's stamp requiring its own control
        # version) is upgraded from that repository in the same transaction, as dnf's solver
        # does; nothing is erased.
        upgrades = [
            path
            for name, path in sorted(self._packages(entry["dir"]).items())
            if name != control and _rpm(host, "-q", name).returncode == 0
        ]
        p = _rpm(host, "-U", "--test", "--nosignature", rpm, *upgrades)
        if p.returncode != 0:
            # pool_update.precheck classify_dnf_failure: "nothing provides X >= V needed by P"
            # is a wrong server version (found: P, required: X >= V); other misses are
            # missing prerequisites.
            needs = re.findall(r"^\s+(.+?) is needed by (\S+)", p.stdout, re.M)
            versioned = [(req, by) for req, by in needs if re.search(r"[<>=]", req)]
            if versioned:
                raise XapiError(
                    "UPDATE_PRECHECK_FAILED_WRONG_SERVER_VERSION",
                    label,
                    versioned[0][1],
                    versioned[0][0],
                )
            if needs:
                raise XapiError(
                    "UPDATE_PRECHECK_FAILED_PREREQUISITE_MISSING",
                    label,
                    " ".join(req for req, _by in needs),
                )
            raise XapiError("UPDATE_PRECHECK_FAILED_UNKNOWN_ERROR", label, p.stdout[-2000:])
        return "ok"

    # ------------------------------------------------------------------ apply
    def apply(self, uuid, host):
        """xen-api python3/extensions/pool_update.apply."""
        entry = self._entry(uuid)
        if os.path.isfile(host.path(APPLIED, uuid)):
            raise XapiError("UPDATE_ALREADY_APPLIED", uuid)
        self.precheck(uuid, host)
        work, doc = entry["dir"], entry["doc"]
        self._seed(host)
        rpms = sorted(self._packages(work).values())
        key = doc.get("key")
        if key:
            # yum runs with gpgcheck=1 and the key import-update-key put on this host.
            keyfile = host.path(KEY_DIR, key)
            if not os.path.isfile(keyfile):
                raise XapiError(
                    "UPDATE_APPLY_FAILED",
                    "GPG key retrieval failed: [Errno 14] "
                    "file://%s not found" % ("/" + KEY_DIR + "/" + key),
                )
            db = tempfile.mkdtemp(prefix="rpmdb-", dir=self.dir)
            try:
                subprocess.run(
                    ["rpm", "--dbpath", db, "--import", keyfile],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for r in rpms:
                    p = subprocess.run(
                        ["rpm", "--dbpath", db, "-K", r],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                    if p.returncode != 0 or "NOKEY" in p.stdout or "BAD" in p.stdout.upper():
                        raise XapiError(
                            "UPDATE_APPLY_FAILED",
                            "Package %s is not signed with the update key" % os.path.basename(r),
                        )
            finally:
                shutil.rmtree(db, ignore_errors=True)
        # Requires resolved against the host's installed packages, as yum does: a missing
        # one fails the whole transaction.
        p = _rpm(host, "-U", "--noscripts", "--nosignature", *rpms)
        if p.returncode != 0:
            raise XapiError("UPDATE_APPLY_FAILED", p.stdout[-2000:])

    # ------------------------------------------------------------------ clean, destroy
    def pool_clean(self, uuid):
        """xapi_pool_update.ml pool_clean: the update's files (its VDI) go, the record stays."""
        entry = self._entry(uuid)
        if entry["dir"]:
            shutil.rmtree(entry["dir"], ignore_errors=True)
            entry["dir"] = None

    def destroy(self, uuid):
        """xapi_pool_update.ml destroy: only an update applied on no host."""
        if self.hosts(uuid):
            raise XapiError("UPDATE_IS_APPLIED")
        self.pool_clean(uuid)
        del self.known[uuid]


def _ensure(d):
    os.makedirs(d, exist_ok=True)
    return d
