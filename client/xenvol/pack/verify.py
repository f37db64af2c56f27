"""Verify a supplemental pack without a XenServer: the checklist a host would apply, and more.

  xenvol pack verify PACK.iso [--key RPM-GPG-KEY-xenvol] [--json]

Extracts the ISO and checks its structure, update.xml, the signatures (with the shipped key,
or --key, trusted ultimately as import-update-key does), the repository metadata and checksums,
the comps group and stamp package, each RPM's headers and signature, and installs the RPMs into
a scratch root to check modes, owners, shebang, requires and scriptlets."""
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

from .common import KEY_FILE, LABEL, PAYLOAD, PLUGIN, PackError, gpg, run, stop_agent, update_uuid

REPO_NS = {"r": "http://linux.duke.edu/metadata/repo"}
COMMON_NS = {"c": "http://linux.duke.edu/metadata/common",
             "rpm": "http://linux.duke.edu/metadata/rpm"}
GUIDANCE = {"restartHVM", "restartPV", "restartHost", "restartXAPI"}


class Report(object):
    def __init__(self):
        self.results = []

    def check(self, name, ok, detail=""):
        self.results.append((name, bool(ok), detail))
        return bool(ok)

    @property
    def ok(self):
        return all(ok for _n, ok, _d in self.results)

    def failures(self):
        return [(n, d) for n, ok, d in self.results if not ok]

    def text(self):
        return "\n".join("%s %s%s" % ("ok  " if ok else "FAIL", n, (": " + d) if d and not ok else "")
                         for n, ok, d in self.results)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _rpmq(path, fmt):
    return run(["rpm", "-qp", "--nosignature", "--nodigest", "--qf", fmt, path])


def verify(iso, key=None):
    report = Report()
    work = tempfile.mkdtemp(prefix="xv-")
    home = os.path.join(work, "g")
    os.mkdir(home, 0o700)
    try:
        _verify(iso, key, report, work, home)
    except PackError as e:
        report.check("verification could run", False, str(e))
    finally:
        stop_agent(home)
        shutil.rmtree(work, ignore_errors=True)
    return report


def _verify(iso, key, report, work, home):
    tree = os.path.join(work, "iso")
    # 1. structure: Rock Ridge keeps update.xml.asc and the long repodata names intact.
    run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", tree])
    for name in ("update.xml", "update.xml.asc", "repodata/repomd.xml", "repodata/repomd.xml.asc"):
        report.check("ISO has %s" % name, os.path.isfile(os.path.join(tree, name)))
    report.check("ISO has no .treeinfo (it would pose as a product repository)",
                 not os.path.exists(os.path.join(tree, ".treeinfo")))
    stray = [os.path.relpath(os.path.join(b, n), tree) for b, _d, ns in os.walk(tree) for n in ns
             if n.endswith(".rpm") and os.path.relpath(b, tree) != "Packages"]
    report.check("RPMs only under Packages/", not stray, ", ".join(stray))
    if not report.ok:
        return
    # 2. update.xml
    upd = ET.parse(os.path.join(tree, "update.xml")).getroot()
    version = upd.get("version", "")
    label = upd.get("name-label", "")
    report.check("update.xml root is <update>", upd.tag == "update")
    report.check("update.xml name-label is %s" % LABEL, label == LABEL, label)
    report.check("update.xml version is set", bool(version))
    report.check("update.xml uuid is uuid5(label, version)",
                 upd.get("uuid") == update_uuid(label, version), upd.get("uuid", ""))
    guidance = set(g for g in upd.get("after-apply-guidance", "").split(",") if g)
    report.check("after-apply-guidance is valid", guidance <= GUIDANCE, ",".join(guidance))
    report.check("enforce-homogeneity is true or false",
                 upd.get("enforce-homogeneity", "false") in ("true", "false"))
    descs = upd.findall("name-description")
    report.check("one non-empty name-description", len(descs) == 1 and (descs[0].text or "").strip())
    key_attr = upd.get("key")
    shipped = os.path.join(tree, KEY_FILE)
    report.check("key attribute names the shipped key file",
                 key_attr is None or (key_attr == KEY_FILE and os.path.isfile(shipped)), key_attr)
    # 3. signatures, with the key trusted as import-update-key does
    keyfile = key or shipped
    if not report.check("a public key to verify with", os.path.isfile(keyfile), keyfile):
        return
    gpg(home, "--import", keyfile)
    listing = gpg(home, "--with-colons", "--list-keys")
    fprs = re.findall(r"^fpr:+([0-9A-F]{40}):", listing, re.M)
    algos = re.findall(r"^pub:[^:]*:[^:]*:(\d+):", listing, re.M)
    report.check("the key is RSA (dom0's gpg has no EdDSA)", algos and all(a == "1" for a in algos),
                 ",".join(algos))
    gpg(home, "--import-ownertrust", input_text="".join("%s:6:\n" % f for f in fprs[:1]))
    for name in ("update.xml", "repodata/repomd.xml"):
        path = os.path.join(tree, name)
        p = subprocess.run(["gpg", "--homedir", home, "--batch", "--status-fd", "1", "--verify",
                            path + ".asc", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
        status = p.stdout
        good = "[GNUPG:] GOODSIG" in status and "[GNUPG:] TRUST_ULTIMATE" in status and \
            any("VALIDSIG %s" % f in status for f in fprs)
        report.check("signature of %s (GOODSIG, TRUST_ULTIMATE)" % name, good,
                     (status.strip().splitlines() or ["no status"])[-1])
    # 4. repository metadata
    repomd = ET.parse(os.path.join(tree, "repodata/repomd.xml")).getroot()
    types = {}
    for data in repomd.findall("r:data", REPO_NS):
        href = data.find("r:location", REPO_NS).get("href")
        types[data.get("type")] = href
        path = os.path.join(tree, href)
        checksum = data.find("r:checksum", REPO_NS)
        size = data.find("r:size", REPO_NS)
        ok = os.path.isfile(path) and checksum.get("type") == "sha256" and \
            _sha256(path) == checksum.text and (size is None or int(size.text) == os.path.getsize(path))
        report.check("repodata %s matches its checksum and size" % data.get("type"), ok, href)
    for t in ("primary", "filelists", "other", "group"):
        report.check("repomd lists %s" % t, t in types)
    if "primary" not in types:
        return
    report.check("primary is gzip", types["primary"].endswith(".xml.gz"), types["primary"])
    # 5. packages in primary
    with gzip.open(os.path.join(tree, types["primary"])) as fh:
        primary = ET.parse(fh).getroot()
    packages = {}
    for pkg in primary.findall("c:package", COMMON_NS):
        name = pkg.find("c:name", COMMON_NS).text
        href = pkg.find("c:location", COMMON_NS).get("href")
        packages[name] = (pkg, href)
        path = os.path.join(tree, href)
        ok = os.path.isfile(path) and _sha256(path) == pkg.find("c:checksum", COMMON_NS).text and \
            int(pkg.find("c:size", COMMON_NS).get("package")) == os.path.getsize(path)
        report.check("package %s matches primary (sha256, size)" % name, ok, href)
    on_disk = sorted(n for n in os.listdir(os.path.join(tree, "Packages")) if n.endswith(".rpm"))
    report.check("primary lists every RPM under Packages/",
                 sorted(os.path.basename(h) for _p, h in packages.values()) == on_disk)
    # 6. comps group `update`
    stamp = "update-" + label
    if "group" in types:
        comps = ET.parse(os.path.join(tree, types["group"])).getroot()
        groups = dict((g.findtext("id"), [r.text for r in g.iter("packagereq")])
                      for g in comps.iter("group"))
        report.check("comps group `update` exists", "update" in groups)
        reqs = groups.get("update", [])
        report.check("group `update` pulls %s" % stamp, stamp in reqs, ",".join(reqs))
        report.check("every packagereq is in the repository", all(r in packages for r in reqs),
                     ",".join(r for r in reqs if r not in packages))
    # 7. stamp package
    if not report.check("stamp package %s exists" % stamp, stamp in packages):
        return
    if not report.check("payload package %s exists" % PAYLOAD, PAYLOAD in packages):
        return
    stamp_rpm = os.path.join(tree, packages[stamp][1])
    payload_rpm = os.path.join(tree, packages[PAYLOAD][1])
    report.check("stamp version is the pack version", _rpmq(stamp_rpm, "%{VERSION}") == version)
    payload_vr = _rpmq(payload_rpm, "%{VERSION}-%{RELEASE}")
    requires = _rpmq(stamp_rpm, "[%{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\n]")
    report.check("stamp requires %s >= %s" % (PAYLOAD, payload_vr),
                 "%s >= %s" % (PAYLOAD, payload_vr) in requires, requires.strip())
    applied = "/var/update/applied/%s" % upd.get("uuid")
    report.check("stamp owns %s" % applied, applied in _rpmq(stamp_rpm, "[%{FILENAMES}\n]"))
    report.check("installation-size is the payload's installed size",
                 upd.get("installation-size") == _rpmq(payload_rpm, "%{SIZE}"),
                 "%s vs %s" % (upd.get("installation-size"), _rpmq(payload_rpm, "%{SIZE}")))
    # 9. every RPM: headers and signature
    db = os.path.join(work, "rpmdb")
    os.makedirs(db)
    run(["rpm", "--dbpath", db, "--import", keyfile])
    for name, (_pkg, href) in sorted(packages.items()):
        path = os.path.join(tree, href)
        report.check("%s payload is gzip or xz" % name,
                     _rpmq(path, "%{PAYLOADCOMPRESSOR}") in ("gzip", "xz"))
        report.check("%s is noarch" % name, _rpmq(path, "%{ARCH}") == "noarch")
        reqs = _rpmq(path, "[%{REQUIRENAME}\n]")
        report.check("%s needs no rpmlib feature EL7 lacks" % name,
                     "RichDependencies" not in reqs and "PayloadIsZstd" not in reqs)
        p = subprocess.run(["rpm", "--dbpath", db, "-Kv", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        sig_ok = p.returncode == 0 and "RSA/SHA256 Signature" in p.stdout and "BAD" not in p.stdout \
            and "NOKEY" not in p.stdout
        report.check("%s is signed by the pack key and intact" % name, sig_ok,
                     " ".join(p.stdout.split())[-200:])
        report.check("%s has no scriptlets" % name,
                     not run(["rpm", "-qp", "--nosignature", "--nodigest", "--scripts", path]).strip())
    # 10. payload content, installed into a scratch root
    _installed(report, work, tree, payload_rpm, stamp_rpm, upd)


def _installed(report, work, tree, payload_rpm, stamp_rpm, upd):
    files = _rpmq(payload_rpm, "[%{FILENAMES}\n]").split()
    report.check("the package does not own /etc/xapi.d/plugins (xapi-core does)",
                 "/etc/xapi.d/plugins" not in files and "/etc/xapi.d" not in files)
    report.check("no kernel modules or boot files",
                 not [f for f in files if f.startswith(("/lib/modules", "/boot"))])
    reqs = _rpmq(payload_rpm, "[%{REQUIRENAME}\n]").split()
    report.check("requires xapi-core", "xapi-core" in reqs, " ".join(reqs))
    report.check("no generated python(abi) or /usr/bin/env requires",
                 not [r for r in reqs if r.startswith("python(abi)") or r == "/usr/bin/env"])
    modes = dict((line.split(" ", 1)[1], line.split(" ", 1)[0]) for line in _rpmq(
        payload_rpm, "[%{FILEMODES:perms}:%{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]")
        .splitlines() if line)
    report.check("%s is 0755 root:root in the package" % PLUGIN,
                 modes.get(PLUGIN) == "-rwxr-xr-x:root:root", modes.get(PLUGIN, "missing"))
    root = os.path.join(work, "root")
    os.makedirs(root)
    p = subprocess.run(["rpm", "--force-debian", "--root", root, "--dbpath", "/var/lib/rpm", "-i",
                        "--nodeps", "--noscripts", "--nosignature", payload_rpm, stamp_rpm],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if not report.check("the RPMs install into a scratch root", p.returncode == 0, p.stdout[-300:]):
        return
    plugin = os.path.join(root, PLUGIN.lstrip("/"))
    st = os.stat(plugin) if os.path.exists(plugin) else None
    report.check("installed plugin is executable (0755)", st and (st.st_mode & 0o777) == 0o755,
                 oct(st.st_mode & 0o777) if st else "missing")
    with open(plugin, "rb") as fh:
        first = fh.readline().decode("utf-8", "replace").strip()
    report.check("plugin shebang is #!/usr/bin/python3 (dom0's python)", first == "#!/usr/bin/python3",
                 first)
    v = subprocess.run(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", "-V", "--nodeps",
                        PAYLOAD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    report.check("rpm -V of the installed payload is clean", v.returncode == 0, v.stdout.strip()[-300:])
    applied = os.path.join(root, "var/update/applied", upd.get("uuid"))
    ok = False
    if os.path.isfile(applied):
        doc = ET.parse(applied).getroot()
        ok = doc.get("uuid") == upd.get("uuid") and doc.get("name-label") == upd.get("name-label") \
            and doc.get("version") == upd.get("version") and doc.get("key") is None and \
            (doc.findtext("name-description") or "").strip()
    report.check("the applied stamp is the update document without key", ok)
    version_file = os.path.join(root, "etc/xapi.d/plugins/xenvol_dom0/VERSION")
    with open(version_file) as fh:
        report.check("the plugin's VERSION is the pack version",
                     fh.read().strip() == upd.get("version"))
