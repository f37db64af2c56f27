"""Verify a supplemental pack without a XenServer: the checklist a host would apply, and more.

  xenvol pack verify PACK.iso --key RPM-GPG-KEY-xenvol | --keyring GNUPGHOME [--json]

Extracts the ISO (pure Python, pycdlib; xorriso where pycdlib is missing) and checks its
structure, update.xml, the signatures against the keys YOU trust (--key: the vendor's public
key obtained separately, or --keyring: a gnupg home), never against the key inside the ISO
(anyone can ship a key), the repository metadata and checksums, the comps group, control and
stamp packages, each RPM's headers and signature, and installs the RPMs into a scratch root to
check modes, owners, shebang, requires, scriptlets and rpm -V. The embedded key's fingerprint
is shown; a pack signed with the xenvol test key passes with a warning."""

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Set, Tuple

from .common import (
    CONTROL,
    GATE,
    KEY_FILE,
    LABEL,
    PAYLOAD,
    PLUGIN,
    PackError,
    extract_iso,
    gpg,
    is_test_key,
    key_info,
    run,
    stop_agent,
    update_uuid,
)

REPO_NS = {"r": "http://linux.duke.edu/metadata/repo"}
COMMON_NS = {
    "c": "http://linux.duke.edu/metadata/common",
    "rpm": "http://linux.duke.edu/metadata/rpm",
}
STAMP_NAME = "update-" + LABEL
GUIDANCE = {"restartHVM", "restartPV", "restartHost", "restartXAPI"}


class Report:
    def __init__(self) -> None:
        self.results: List[Tuple[str, bool, str]] = []
        self.warnings: List[str] = []
        # "FINGERPRINT uid" of the key that signed, when it verified
        self.signer: Optional[str] = None
        self.embedded: Optional[str] = None  # the same for the key shipped in the ISO

    def check(self, name: str, ok: object, detail: Optional[str] = "") -> bool:
        self.results.append((name, bool(ok), detail or ""))
        return bool(ok)

    @property
    def ok(self) -> bool:
        return all(ok for _n, ok, _d in self.results)

    def failures(self) -> List[Tuple[str, str]]:
        return [(n, d) for n, ok, d in self.results if not ok]

    def text(self) -> str:
        head = [
            "embedded key: %s" % (self.embedded or "none"),
            "signed by:    %s" % (self.signer or "no trusted key"),
        ]
        return "\n".join(
            head
            + [
                "%s %s%s" % ("ok  " if ok else "FAIL", n, (": " + d) if d and not ok else "")
                for n, ok, d in self.results
            ]
        )


def _child(el: ET.Element, path: str, ns: Dict[str, str]) -> ET.Element:
    found = el.find(path, ns)
    if found is None:
        raise PackError("repository metadata: <%s> has no %s" % (el.tag, path))
    return found


def _attr(el: ET.Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise PackError("repository metadata: <%s> has no %s attribute" % (el.tag, name))
    return value


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _rpmq(path: str, fmt: str) -> str:
    return run(["rpm", "-qp", "--nosignature", "--nodigest", "--qf", fmt, path])


def verify(iso: str, key: Optional[str] = None, keyring: Optional[str] = None) -> Report:
    """key: a public key file you trust; keyring: a gnupg home whose keys you trust."""
    report = Report()
    work = tempfile.mkdtemp(prefix="xv-")
    home = os.path.join(work, "g")
    os.mkdir(home, 0o700)
    try:
        trusted_file = _trusted(key, keyring, work, home)
    except PackError:
        stop_agent(home)
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        _verify(iso, trusted_file, report, work, home)
    except PackError as e:
        report.check("verification could run", False, str(e))
    finally:
        stop_agent(home)
        shutil.rmtree(work, ignore_errors=True)
    return report


def _trusted(key: Optional[str], keyring: Optional[str], work: str, home: str) -> str:
    """An armored file of the keys the admin trusts; PackError when there are none."""
    if keyring:
        if not os.path.isdir(keyring):
            raise PackError("--keyring %s: no such gnupg home" % keyring)
        armored = gpg(keyring, "--armor", "--export")
        stop_agent(keyring)
        if "PUBLIC KEY" not in armored:
            raise PackError("--keyring %s holds no public key" % keyring)
        path = os.path.join(work, "trusted.asc")
        with open(path, "w") as fh:
            fh.write(armored)
        return path
    if not key:
        raise PackError(
            "no trusted key: give --key FILE (the vendor's public key, obtained "
            "separately, not the one inside the ISO) or --keyring GNUPGHOME"
        )
    if not os.path.isfile(key):
        raise PackError("--key %s: no such file" % key)
    try:
        keys = key_info(home, key)
    except PackError:
        keys = []
    if not keys:
        raise PackError("--key %s holds no public key" % key)
    return key


def _verify(iso: str, trusted_file: str, report: Report, work: str, home: str) -> None:
    tree = os.path.join(work, "iso")
    # 1. structure: Rock Ridge keeps update.xml.asc and the long repodata names intact.
    extract_iso(iso, tree)
    for name in ("update.xml", "update.xml.asc", "repodata/repomd.xml", "repodata/repomd.xml.asc"):
        report.check("ISO has %s" % name, os.path.isfile(os.path.join(tree, name)))
    report.check(
        "ISO has no .treeinfo (it would pose as a product repository)",
        not os.path.exists(os.path.join(tree, ".treeinfo")),
    )
    stray = [
        os.path.relpath(os.path.join(b, n), tree)
        for b, _d, ns in os.walk(tree)
        for n in ns
        if n.endswith(".rpm") and os.path.relpath(b, tree) != "Packages"
    ]
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
    report.check(
        "update.xml uuid is uuid5(label, version)",
        upd.get("uuid") == update_uuid(label, version),
        upd.get("uuid", ""),
    )
    guidance = set(g for g in upd.get("after-apply-guidance", "").split(",") if g)
    report.check("after-apply-guidance is valid", guidance <= GUIDANCE, ",".join(guidance))
    report.check(
        "enforce-homogeneity is true or false",
        upd.get("enforce-homogeneity", "false") in ("true", "false"),
    )
    descs = upd.findall("name-description")
    report.check(
        "one non-empty name-description", len(descs) == 1 and (descs[0].text or "").strip()
    )
    key_attr = upd.get("key")
    shipped = os.path.join(tree, KEY_FILE)
    report.check(
        "key attribute names the shipped key file",
        key_attr is None or (key_attr == KEY_FILE and os.path.isfile(shipped)),
        key_attr,
    )
    # 3. signatures, with the admin's keys trusted as import-update-key does
    if os.path.isfile(shipped):
        shipped_keys = key_info(home, shipped)
        report.embedded = ", ".join("%s %s" % (k["fpr"], k["uid"]) for k in shipped_keys)
    else:
        shipped_keys = []
    gpg(home, "--import", trusted_file)
    trusted = key_info(home)
    fprs = [k["fpr"] for k in trusted]
    report.check(
        "the key is RSA (dom0's gpg has no EdDSA)",
        trusted and all(k["algo"] == "1" for k in trusted),
        ",".join(k["algo"] for k in trusted),
    )
    gpg(home, "--import-ownertrust", input_text="".join("%s:6:\n" % f for f in fprs))
    report.check(
        "the key shipped in the ISO is one you trust (yum on the host uses it)",
        not shipped_keys or all(k["fpr"] in fprs for k in shipped_keys),
        report.embedded or "",
    )
    signers: Set[str] = set()
    for name in ("update.xml", "repodata/repomd.xml"):
        path = os.path.join(tree, name)
        p = subprocess.run(
            [
                "gpg",
                "--homedir",
                home,
                "--batch",
                "--status-fd",
                "1",
                "--verify",
                path + ".asc",
                path,
            ],
            capture_output=True,
            text=True,
        )
        status = p.stdout
        valid = re.findall(
            r"^\[GNUPG:\] VALIDSIG \S+ \S+ \S+ \S+ \S+ \S+ \S+ \S+ \S+ ([0-9A-F]{40})", status, re.M
        )
        good = (
            "[GNUPG:] GOODSIG" in status
            and "[GNUPG:] TRUST_ULTIMATE" in status
            and bool(valid)
            and all(v in fprs for v in valid)
        )
        signers.update(valid)
        report.check(
            "signature of %s by a trusted key (GOODSIG, TRUST_ULTIMATE)" % name,
            good,
            (status.strip().splitlines() or ["no signature by a trusted key"])[-1],
        )
    by_fpr = dict((k["fpr"], k) for k in trusted)
    report.signer = (
        ", ".join("%s %s" % (f, by_fpr[f]["uid"]) for f in sorted(signers) if f in by_fpr) or None
    )
    if any(is_test_key(by_fpr[f]["uid"]) for f in signers if f in by_fpr) or any(
        is_test_key(k["uid"]) for k in shipped_keys
    ):
        report.warnings.append(
            "this pack is signed with the xenvol TEST key: install it on "
            "test hosts only; a host that imports this key accepts any "
            "update signed by it"
        )
    # 4. repository metadata
    repomd = ET.parse(os.path.join(tree, "repodata/repomd.xml")).getroot()
    types: Dict[str, str] = {}
    for data in repomd.findall("r:data", REPO_NS):
        href = _attr(_child(data, "r:location", REPO_NS), "href")
        types[_attr(data, "type")] = href
        path = os.path.join(tree, href)
        checksum = _child(data, "r:checksum", REPO_NS)
        size = data.find("r:size", REPO_NS)
        ok = (
            os.path.isfile(path)
            and checksum.get("type") == "sha256"
            and _sha256(path) == checksum.text
            and (size is None or int(size.text or -1) == os.path.getsize(path))
        )
        report.check("repodata %s matches its checksum and size" % data.get("type"), ok, href)
    for t in ("primary", "filelists", "other", "group"):
        report.check("repomd lists %s" % t, t in types)
    if "primary" not in types:
        return
    report.check("primary is gzip", types["primary"].endswith(".xml.gz"), types["primary"])
    # 5. packages in primary
    with gzip.open(os.path.join(tree, types["primary"])) as fh:
        primary = ET.parse(fh).getroot()
    packages: Dict[str, Tuple[ET.Element, str]] = {}
    for pkg in primary.findall("c:package", COMMON_NS):
        name = _child(pkg, "c:name", COMMON_NS).text or ""
        href = _attr(_child(pkg, "c:location", COMMON_NS), "href")
        packages[name] = (pkg, href)
        path = os.path.join(tree, href)
        ok = (
            os.path.isfile(path)
            and _sha256(path) == _child(pkg, "c:checksum", COMMON_NS).text
            and int(_attr(_child(pkg, "c:size", COMMON_NS), "package")) == os.path.getsize(path)
        )
        report.check("package %s matches primary (sha256, size)" % name, ok, href)
    on_disk = sorted(n for n in os.listdir(os.path.join(tree, "Packages")) if n.endswith(".rpm"))
    report.check(
        "primary lists every RPM under Packages/",
        sorted(os.path.basename(h) for _p, h in packages.values()) == on_disk,
    )
    # 6. comps group `update`
    stamp = "update-" + label
    if "group" in types:
        comps = ET.parse(os.path.join(tree, types["group"])).getroot()
        groups = dict(
            (g.findtext("id"), [r.text or "" for r in g.iter("packagereq")])
            for g in comps.iter("group")
        )
        report.check("comps group `update` exists", "update" in groups)
        reqs = groups.get("update", [])
        report.check("group `update` pulls %s" % stamp, stamp in reqs, ",".join(reqs))
        report.check(
            "every packagereq is in the repository",
            all(r in packages for r in reqs),
            ",".join(r for r in reqs if r not in packages),
        )
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
    report.check(
        "stamp requires %s >= %s" % (PAYLOAD, payload_vr),
        "%s >= %s" % (PAYLOAD, payload_vr) in requires,
        requires.strip(),
    )
    applied = "/var/update/applied/%s" % upd.get("uuid")
    report.check("stamp owns %s" % applied, applied in _rpmq(stamp_rpm, "[%{FILENAMES}\n]"))
    gate = " ".join(GATE)
    report.check(
        "update.xml names the control package %s" % CONTROL,
        upd.get("control") == CONTROL,
        upd.get("control") or "",
    )
    if report.check("control package %s exists" % CONTROL, CONTROL in packages):
        control_rpm = os.path.join(tree, packages[CONTROL][1])
        gated = _rpmq(control_rpm, "[%{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\n]")
        report.check("control requires %s (the version gate)" % gate, gate in gated, gated.strip())
    report.check(
        "payload requires %s too (for yum install of the bare RPM)" % gate,
        gate in _rpmq(payload_rpm, "[%{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\n]"),
    )
    report.check(
        "installation-size is the payload's installed size",
        upd.get("installation-size") == _rpmq(payload_rpm, "%{SIZE}"),
        "%s vs %s" % (upd.get("installation-size"), _rpmq(payload_rpm, "%{SIZE}")),
    )
    # 9. every RPM: headers and signature
    db = os.path.join(work, "rpmdb")
    os.makedirs(db)
    run(["rpm", "--dbpath", db, "--import", trusted_file])
    for name, (_pkg, href) in sorted(packages.items()):
        path = os.path.join(tree, href)
        report.check(
            "%s payload is gzip or xz" % name, _rpmq(path, "%{PAYLOADCOMPRESSOR}") in ("gzip", "xz")
        )
        report.check("%s is noarch" % name, _rpmq(path, "%{ARCH}") == "noarch")
        needs = _rpmq(path, "[%{REQUIRENAME}\n]")
        report.check(
            "%s needs no rpmlib feature EL7 lacks" % name,
            "RichDependencies" not in needs and "PayloadIsZstd" not in needs,
        )
        p = subprocess.run(
            ["rpm", "--dbpath", db, "-Kv", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        sig_ok = (
            p.returncode == 0
            and "RSA/SHA256 Signature" in p.stdout
            and "BAD" not in p.stdout
            and "NOKEY" not in p.stdout
        )
        report.check(
            "%s is signed by the pack key and intact" % name,
            sig_ok,
            " ".join(p.stdout.split())[-200:],
        )
        report.check(
            "%s has no scriptlets" % name,
            not run(["rpm", "-qp", "--nosignature", "--nodigest", "--scripts", path]).strip(),
        )
    # 10. payload content, installed into a scratch root
    _installed(report, work, tree, payload_rpm, stamp_rpm, upd)


def _rpm_verify(root: str) -> Tuple[bool, str]:
    """`rpm -V` of the payload installed under root: (clean, the tail of what it said)."""
    v = subprocess.run(
        ["rpm", "--root", root, "--dbpath", "/var/lib/rpm", "-V", "--nodeps", PAYLOAD],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return v.returncode == 0, v.stdout.strip()[-300:]


def _installed(
    report: Report, work: str, tree: str, payload_rpm: str, stamp_rpm: str, upd: ET.Element
) -> None:
    files = _rpmq(payload_rpm, "[%{FILENAMES}\n]").split()
    report.check(
        "the package does not own /etc/xapi.d/plugins (xapi-core does)",
        "/etc/xapi.d/plugins" not in files and "/etc/xapi.d" not in files,
    )
    report.check(
        "no kernel modules or boot files",
        not [f for f in files if f.startswith(("/lib/modules", "/boot"))],
    )
    reqs = _rpmq(payload_rpm, "[%{REQUIRENAME}\n]").split()
    report.check("requires xapi-core", "xapi-core" in reqs, " ".join(reqs))
    report.check(
        "no generated python(abi) or /usr/bin/env requires",
        not [r for r in reqs if r.startswith("python(abi)") or r == "/usr/bin/env"],
    )
    modes = dict(
        (line.split(" ", 1)[1], line.split(" ", 1)[0])
        for line in _rpmq(
            payload_rpm, "[%{FILEMODES:perms}:%{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]"
        ).splitlines()
        if line
    )
    report.check(
        "%s is 0755 root:root in the package" % PLUGIN,
        modes.get(PLUGIN) == "-rwxr-xr-x:root:root",
        modes.get(PLUGIN, "missing"),
    )
    root = os.path.join(work, "root")
    os.makedirs(root)
    p = subprocess.run(
        [
            "rpm",
            "--force-debian",
            "--root",
            root,
            "--dbpath",
            "/var/lib/rpm",
            "-i",
            "--nodeps",
            "--noscripts",
            "--nosignature",
            payload_rpm,
            stamp_rpm,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if not report.check("the RPMs install into a scratch root", p.returncode == 0, p.stdout[-300:]):
        return
    plugin = os.path.join(root, PLUGIN.lstrip("/"))
    st = os.stat(plugin) if os.path.exists(plugin) else None
    report.check(
        "installed plugin is executable (0755)",
        st and (st.st_mode & 0o777) == 0o755,
        oct(st.st_mode & 0o777) if st else "missing",
    )
    with open(plugin, "rb") as fh:
        first = fh.readline().decode("utf-8", "replace").strip()
    report.check(
        "plugin shebang is #!/usr/bin/python3 (dom0's python)", first == "#!/usr/bin/python3", first
    )
    ok, out = _rpm_verify(root)
    report.check("rpm -V of the installed payload is clean", ok, out)
    # What running the plugin does to the tree: Python writes its bytecode caches.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            os.path.join(root, "etc/xapi.d/plugins/xenvol_dom0"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ok, out = _rpm_verify(root)
    report.check("rpm -V is still clean after Python wrote its bytecode caches", ok, out)
    applied = os.path.join(root, "var/update/applied", upd.get("uuid") or "")
    ok = False
    if os.path.isfile(applied):
        doc = ET.parse(applied).getroot()
        ok = (
            doc.get("uuid") == upd.get("uuid")
            and doc.get("name-label") == upd.get("name-label")
            and doc.get("version") == upd.get("version")
            and doc.get("key") is None
            and bool((doc.findtext("name-description") or "").strip())
        )
    report.check("the applied stamp is the update document without key", ok)
    version_file = os.path.join(root, "etc/xapi.d/plugins/xenvol_dom0/VERSION")
    with open(version_file) as fh:
        report.check(
            "the plugin's VERSION is the pack version", fh.read().strip() == upd.get("version")
        )
    e = subprocess.run(
        [
            "rpm",
            "--force-debian",
            "--root",
            root,
            "--dbpath",
            "/var/lib/rpm",
            "-e",
            "--nodeps",
            "--noscripts",
            STAMP_NAME,
            PAYLOAD,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    left = [
        os.path.join(b, n)
        for top in ("etc/xapi.d/plugins/xenvol_dom0", "etc/xenvol")
        for b, _d, ns in os.walk(os.path.join(root, top))
        for n in ns + _d
    ]
    report.check(
        "rpm -e removes every file, bytecode included",
        e.returncode == 0 and not left,
        (e.stdout.strip() + " " + " ".join(left[:5]))[-300:],
    )
