"""Build the RPMs and the signed update-format ISO (`make pack`).

  python -m xenvol_pack.build [--out DIR] [--test-key] [--source DIR]

Signing key: $XENVOL_GPG_HOME (a gnupg home holding the secret key) and $XENVOL_GPG_KEY (its
user id or fingerprint) for releases. Without them the build refuses, unless --test-key
(`make pack TEST_KEY=1`) asks for a throwaway key: it is made once in DIR/test-signing (saying
so), its user id says it is a test key, and verify and install warn about it. Reproducible:
the same source, key and SOURCE_DATE_EPOCH (default: the last commit's time) give
byte-identical files; signatures are dated at that time, or at the key's creation if the key
is newer."""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .common import (
    CONTROL,
    GATE,
    KEY_FILE,
    LABEL,
    PAYLOAD,
    TEST_KEY_EMAIL,
    TEST_KEY_NAME,
    PackError,
    gpg,
    iso_name,
    key_info,
    rpm_name,
    run,
    stop_agent,
    update_uuid,
)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VERSION_FILE = "dom0_plugins/etc/xapi.d/plugins/xenvol_dom0/VERSION"
TOOLS = ("rpmbuild", "rpmsign", "createrepo_c", "xorriso", "gpg")
PLUGIN_DIR = "/etc/xapi.d/plugins/xenvol_dom0"
# Pythons a dom0 may run the plugin with besides 3.6 (XenServer 9 moves on); their bytecode
# caches are %ghost so the package owns and removes them.
OTHER_PYTHONS = ("37", "38", "39", "310", "311", "312", "313")


def source_date_epoch(repo: str) -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        return int(
            subprocess.check_output(
                ["git", "-C", repo, "log", "-1", "--format=%ct"], stderr=subprocess.DEVNULL
            ).strip()
        )
    except (subprocess.CalledProcessError, OSError, ValueError):
        return 1767225600  # 2026-01-01, for a tree without git history


def python36() -> Optional[str]:
    """dom0's Python (3.6) on the build machine, for shipped bytecode; None if absent."""
    candidates = (
        [os.environ.get("XENVOL_PYTHON36")]
        + sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6")))
        + [shutil.which("python3.6")]
    )
    for c in candidates:
        if not c:
            continue
        try:  # a pyenv shim exists without a usable 3.6 behind it
            out = subprocess.run(
                [c, "-c", "import sys; print(sys.version_info[:2] == (3, 6))"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                timeout=30,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if out.strip() == "True":
            return c
    return None


def signing_key(out_dir: str, test_key: bool = False) -> Tuple[str, str, List[str]]:
    """(gnupg home, key id, warnings) for signing: the release key from the environment, or
    on request a test key kept in out_dir/test-signing (never made silently)."""
    if os.environ.get("XENVOL_GPG_HOME") or os.environ.get("XENVOL_GPG_KEY"):
        home, key = os.environ.get("XENVOL_GPG_HOME"), os.environ.get("XENVOL_GPG_KEY")
        if not (home and key):
            raise PackError(
                "set both XENVOL_GPG_HOME (the gnupg home) and XENVOL_GPG_KEY "
                "(the key's user id or fingerprint)"
            )
        try:
            gpg(home, "--list-secret-keys", key)
        except PackError:
            raise PackError("no secret key %r in %s" % (key, home)) from None
        return home, key, []
    if not test_key:
        raise PackError(
            "no signing key: set XENVOL_GPG_HOME and XENVOL_GPG_KEY to the release "
            "key, or build a test pack with `make pack TEST_KEY=1` (--test-key)"
        )
    home = os.path.join(os.path.abspath(out_dir), "test-signing")
    warnings = [
        "signed with the xenvol TEST key in %s: for test hosts only, never import it "
        "on production hosts (an imported key can sign any update)" % home
    ]
    if not os.path.exists(os.path.join(home, "pubring.kbx")):
        os.makedirs(home, mode=0o700, exist_ok=True)
        try:
            gpg(
                home,
                "--gen-key",
                input_text="%%no-protection\nKey-Type: RSA\nKey-Length: 3072\n"
                "Key-Usage: sign\nName-Real: %s\nName-Email: %s\nExpire-Date: 0\n%%commit\n"
                % (TEST_KEY_NAME, TEST_KEY_EMAIL),
            )
        finally:
            stop_agent(home)
        warnings.append(
            "made a NEW test key in %s: hosts that imported an earlier test key "
            "will refuse this pack until they import this one" % home
        )
    return home, TEST_KEY_EMAIL, warnings


class Builder:
    def __init__(
        self,
        repo: str,
        out_dir: str,
        epoch: int,
        gpg_home: str,
        key_id: str,
        file_modes: Optional[Mapping[str, int]] = None,
    ) -> None:
        self.repo = repo
        self.out = os.path.abspath(out_dir)
        self.epoch = epoch
        self.gpg_home = gpg_home
        self.key_id = key_id
        self.file_modes: Mapping[str, int] = file_modes or {}
        with open(os.path.join(repo, VERSION_FILE)) as fh:
            self.version = fh.read().strip()
        self.uuid = update_uuid(LABEL, self.version)
        self.date = time.strftime("%a %b %d %Y", time.gmtime(epoch))
        # Signatures are dated at SOURCE_DATE_EPOCH for reproducibility, but never before
        # the key existed (gpg refuses a key "created in the future").
        keys = key_info(gpg_home) if os.path.isdir(gpg_home) else []
        newest = max([k["created"] for k in keys if _matches(k, key_id)] or [0])
        self.sign_time = max(epoch, newest)
        self.faked = "--faked-system-time=%d!" % self.sign_time
        self.signer = ", ".join("%s %s" % (k["fpr"], k["uid"]) for k in keys if _matches(k, key_id))

    # ------------------------------------------------------------------ RPMs
    def _payload_tree(self, root: str) -> str:
        """Stage the files the RPM ships; returns the %files section."""
        src = os.path.join(self.repo, "dom0_plugins")
        files: List[str] = []
        dirs = [PLUGIN_DIR, "/etc/xenvol", "/etc/xenvol/drivers.d"]
        for base, subdirs, names in os.walk(os.path.join(src, "etc")):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            rel = "/" + os.path.relpath(base, src)
            # Our own directories; xapi-core owns /etc/xapi.d/plugins, xen-bugtool its dir.
            if (
                rel.startswith((PLUGIN_DIR + "/", "/etc/xensource/bugtool/xenvol"))
                and rel not in dirs
            ):
                dirs.append(rel)
            for name in sorted(names):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = rel + "/" + name
                files.append(path)
                dest = os.path.join(root, path.lstrip("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copyfile(os.path.join(base, name), dest)
        os.makedirs(os.path.join(root, "etc/xenvol/drivers.d"), exist_ok=True)
        docs = "/usr/share/doc/%s-%s" % (PAYLOAD, self.version)
        dirs.append(docs)
        for doc in (
            "README.md",
            "docs/plugin-api.md",
            "docs/writing-a-driver.md",
            "examples/drivers.d/acme_gluster.py",
        ):
            path = docs + "/" + os.path.basename(doc)
            files.append(path)
            dest = os.path.join(root, path.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(os.path.join(self.repo, doc), dest)
        # Every file dated SOURCE_DATE_EPOCH (what rpm would clamp them to anyway), so the
        # bytecode's recorded source mtime matches the installed file and stays valid.
        for base, _d, names in os.walk(root):
            for n in names:
                os.utime(os.path.join(base, n), (self.epoch, self.epoch))
        lines = ["%%dir %%attr(0755,root,root) %s" % d for d in sorted(dirs)]
        for path in sorted(files):
            mode = self.file_modes.get(
                path, 0o755 if path == "/etc/xapi.d/plugins/xenvol" else 0o644
            )
            config = "%config(noreplace) " if path.startswith("/etc/logrotate.d/") else ""
            lines.append("%s%%attr(%04o,root,root) %s" % (config, mode, path))
        lines += self._bytecode(root, files)
        return "\n".join(lines)

    def _bytecode(self, root: str, files: Sequence[str]) -> List[str]:
        """%files lines for __pycache__: 3.6 bytecode compiled here when a 3.6 is at hand
        (else %ghost), and %ghost caches of newer Pythons."""
        modules = [f for f in files if f.startswith(PLUGIN_DIR + "/") and f.endswith(".py")]
        py36 = python36()
        if py36:
            # -d: tracebacks name the installed path, not this build directory.
            run(
                [
                    py36,
                    "-m",
                    "compileall",
                    "-q",
                    "-d",
                    PLUGIN_DIR,
                    os.path.join(root, PLUGIN_DIR.lstrip("/")),
                ],
                env={"PYTHONHASHSEED": "0"},
            )
        lines = []
        for d in sorted(set(os.path.dirname(m) for m in modules)):
            os.makedirs(os.path.join(root, d.lstrip("/"), "__pycache__"), exist_ok=True)
            lines.append("%%dir %%attr(0755,root,root) %s/__pycache__" % d)
        for m in sorted(modules):
            stem = "%s/__pycache__/%s" % (os.path.dirname(m), os.path.basename(m)[:-3])
            shipped = py36 is not None and os.path.isfile(
                os.path.join(root, stem.lstrip("/") + ".cpython-36.pyc")
            )
            lines.append(
                "%s%%attr(0644,root,root) %s.cpython-36.pyc" % ("" if shipped else "%ghost ", stem)
            )
            lines += [
                "%%ghost %%attr(0644,root,root) %s.cpython-%s.pyc" % (stem, v)
                for v in OTHER_PYTHONS
            ]
        self.bytecode = "python3.6 (%s)" % py36 if py36 else "none shipped (%ghost)"
        return lines

    def _rpmbuild(self, top: str, template: str, subst: Mapping[str, str]) -> None:
        with open(os.path.join(self.repo, "supplemental_pack", template)) as fh:
            spec = fh.read()
        for k, v in subst.items():
            spec = spec.replace("@%s@" % k, v)
        path = os.path.join(top, "SPECS", template[:-3])
        with open(path, "w") as fh:
            fh.write(spec)
        run(
            [
                "rpmbuild",
                "-bb",
                "--nodeps",
                "--define",
                "_topdir %s" % top,
                "--define",
                "_buildhost reproducible",
                "--define",
                "use_source_date_epoch_as_buildtime 1",
                "--define",
                "clamp_mtime_to_source_date_epoch 1",
                "--define",
                "_source_date_epoch_from_changelog 0",
                path,
            ],
            env={"SOURCE_DATE_EPOCH": str(self.epoch)},
        )

    def build_rpms(self, top: str) -> List[str]:
        for d in ("SPECS", "SOURCES", "BUILD", "RPMS", "SRPMS"):
            os.makedirs(os.path.join(top, d), exist_ok=True)
        files = self._payload_tree(os.path.join(top, "SOURCES", "root"))
        base = {
            "VERSION": self.version,
            "DATE": self.date,
            "LABEL": LABEL,
            "UUID": self.uuid,
            "GATE": " ".join(GATE),
        }
        self._rpmbuild(top, "xenvol-xapi-plugin.spec.in", dict(base, FILES=files))
        self._rpmbuild(top, "control.spec.in", base)
        with open(os.path.join(top, "SOURCES", "applied"), "w") as fh:
            fh.write(self.update_xml(with_key=False))
        self._rpmbuild(top, "update-stamp.spec.in", base)
        rpms = os.path.join(top, "RPMS", "noarch")
        return [os.path.join(rpms, n) for n in sorted(os.listdir(rpms))]

    def sign_rpms(self, paths: List[str]) -> None:
        run(
            [
                "rpmsign",
                "--define",
                "__gpg /usr/bin/gpg",
                "--define",
                "_gpg_path %s" % self.gpg_home,
                "--define",
                "_gpg_name %s" % self.key_id,
                "--define",
                "_gpg_digest_algo sha256",
                "--define",
                "_gpg_sign_cmd_extra_args %s --pinentry-mode loopback" % self.faked,
                "--rpmv3",
                "--addsign",
            ]
            + paths
        )

    # ------------------------------------------------------------------ update document
    def update_xml(self, with_key: bool = True, installation_size: int = 0) -> str:
        root = ET.Element(
            "update",
            {
                "uuid": self.uuid,
                "name-label": LABEL,
                "version": self.version,
                "installation-size": str(installation_size),
                "after-apply-guidance": "",
                # A host without the pack may join the pool: with "true" xapi's pool.join demands
                # the same update uuids on both (xapi_pool.ml assert_homogeneous_updates), and each
                # version has its own uuid. The client reports hosts without the plugin instead.
                "enforce-homogeneity": "false",
                "control": CONTROL,
            },
        )
        if with_key:
            root.set("key", KEY_FILE)
        desc = ET.SubElement(root, "name-description")
        desc.text = (
            "xenvol %s: volume drivers for XenServer and XCP-ng (XAPI host plugin)" % self.version
        )
        return '<?xml version="1.0" ?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def groups_xml(self) -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE comps PUBLIC "-//Red Hat, '
            'Inc.//DTD Comps info//EN" "comps.dtd">\n<comps>\n  <group>\n    <id>update</id>\n'
            "    <name>%s</name>\n    <default>False</default>\n    <uservisible>True"
            '</uservisible>\n    <packagelist>\n      <packagereq type="mandatory">%s'
            "</packagereq>\n    </packagelist>\n  </group>\n</comps>\n" % (LABEL, "update-" + LABEL)
        )

    def detach_sign(self, path: str) -> None:
        gpg(
            self.gpg_home,
            "--yes",
            "--armor",
            "--detach-sign",
            "--digest-algo",
            "SHA256",
            self.faked,
            "-u",
            self.key_id,
            "-o",
            path + ".asc",
            path,
        )

    # ------------------------------------------------------------------ the pack
    def build(self) -> Dict[str, Any]:
        os.makedirs(self.out, exist_ok=True)
        work = tempfile.mkdtemp(prefix="xenvol-build-")
        try:
            rpms = self.build_rpms(os.path.join(work, "rpmbuild"))
            self.sign_rpms(rpms)
            pack = os.path.join(work, "iso")
            packages = os.path.join(pack, "Packages")
            os.makedirs(packages)
            for r in rpms:
                dest = os.path.join(packages, os.path.basename(r))
                shutil.copyfile(r, dest)
                os.utime(dest, (self.epoch, self.epoch))  # createrepo records file mtimes
            payload = [r for r in rpms if os.path.basename(r).startswith(PAYLOAD)]
            size = sum(
                int(run(["rpm", "-qp", "--nosignature", "--qf", "%{SIZE}", r])) for r in payload
            )
            with open(os.path.join(pack, "update.xml"), "w") as fh:
                fh.write(self.update_xml(True, size))
            public = gpg(self.gpg_home, "--armor", "--export", self.key_id)
            if "PUBLIC KEY" not in public:
                raise PackError("no public key for %r in %s" % (self.key_id, self.gpg_home))
            with open(os.path.join(pack, KEY_FILE), "w") as fh:
                fh.write(public)
            groups = os.path.join(work, "groups.xml")
            with open(groups, "w") as fh:
                fh.write(self.groups_xml())
            run(
                [
                    "createrepo_c",
                    "--quiet",
                    "--groupfile",
                    groups,
                    "--revision",
                    str(self.epoch),
                    "--set-timestamp-to-revision",
                    "--database",
                    pack,
                ]
            )
            self.detach_sign(os.path.join(pack, "update.xml"))
            self.detach_sign(os.path.join(pack, "repodata", "repomd.xml"))
            for base, dirs, names in os.walk(pack):
                for n in dirs + names:
                    os.utime(os.path.join(base, n), (self.epoch, self.epoch))
            os.utime(pack, (self.epoch, self.epoch))
            iso = os.path.join(self.out, iso_name(self.version))
            if os.path.exists(iso):
                os.unlink(iso)
            run(
                [
                    "xorriso",
                    "-as",
                    "mkisofs",
                    "-r",
                    "-J",
                    "-joliet-long",
                    "-V",
                    ("XENVOL_%s" % self.version.replace(".", "_"))[:32],
                    "-A",
                    "xenvol supplemental pack",
                    "-o",
                    iso,
                    pack,
                ],
                env={"SOURCE_DATE_EPOCH": str(self.epoch)},
            )
            rpm = os.path.join(self.out, rpm_name(self.version))
            shutil.copyfile(os.path.join(packages, rpm_name(self.version)), rpm)
            key = os.path.join(self.out, KEY_FILE)
            shutil.copyfile(os.path.join(pack, KEY_FILE), key)
            return {
                "iso": iso,
                "rpm": rpm,
                "key": key,
                "version": self.version,
                "uuid": self.uuid,
                "signer": self.signer,
                "bytecode": self.bytecode,
            }
        finally:
            stop_agent(self.gpg_home)
            shutil.rmtree(work, ignore_errors=True)


def _matches(key: Mapping[str, Any], key_id: str) -> bool:
    kid = key_id.replace(" ", "").upper()
    return key_id in key["uid"] or (key["fpr"] or "").upper().endswith(kid)


def build(
    out_dir: str,
    repo: Optional[str] = None,
    file_modes: Optional[Mapping[str, int]] = None,
    test_key: bool = False,
) -> Dict[str, Any]:
    repo = os.path.abspath(repo or REPO)
    if not os.path.isfile(os.path.join(repo, VERSION_FILE)):
        raise PackError(
            "%s is not a xenvol source tree: building the pack needs one (run `make "
            "pack` in a checkout, or give --source DIR)" % repo
        )
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        raise PackError(
            "missing %s: install Debian's rpm, createrepo-c, xorriso and gnupg" % ", ".join(missing)
        )
    home, key, warnings = signing_key(out_dir, test_key)
    result = Builder(repo, out_dir, source_date_epoch(repo), home, key, file_modes).build()
    result["warnings"] = warnings
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m xenvol_pack.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=os.path.join(REPO, "out"))
    p.add_argument("--source", help="the source tree (default: the one this runs from)")
    p.add_argument("--test-key", action="store_true", help="sign with a throwaway test key")
    a = p.parse_args(argv)
    try:
        result = build(a.out, a.source, test_key=a.test_key)
    except PackError as e:
        sys.stderr.write("pack: %s\n" % e)
        return 6
    for k in ("iso", "rpm", "key"):
        print("%-4s %s" % (k, result[k]))
    print("update uuid %s, version %s" % (result["uuid"], result["version"]))
    print("signed by %s" % result["signer"])
    print("bytecode: %s" % result["bytecode"])
    for w in result["warnings"]:
        sys.stderr.write("pack: WARNING: %s\n" % w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
