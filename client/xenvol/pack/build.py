"""Build the RPM, the stamp RPM and the signed update-format ISO (`make pack`).

  python -m xenvol.pack.build [--out DIR]

Signing key: $XENVOL_GPG_HOME (a gnupg home holding the secret key) and $XENVOL_GPG_KEY
(its user id or fingerprint) for releases; without them a throwaway RSA key is generated once
in DIR/test-signing and reused, so test builds are signed too. Reproducible: the same source,
key and SOURCE_DATE_EPOCH (default: the last commit's time) give byte-identical files."""
import argparse

import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from .common import (KEY_FILE, LABEL, PAYLOAD, PackError, gpg, iso_name, rpm_name, run,
                     stop_agent, update_uuid)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TOOLS = ("rpmbuild", "rpmsign", "createrepo_c", "xorriso", "gpg")


def source_date_epoch(repo):
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        return int(subprocess.check_output(["git", "-C", repo, "log", "-1", "--format=%ct"],
                                           stderr=subprocess.DEVNULL).strip())
    except (subprocess.CalledProcessError, OSError, ValueError):
        return 1767225600  # 2026-01-01, for a tree without git history


def signing_key(out_dir):
    """(gnupg home, key id) for signing: the release key from the environment, else a
    throwaway test key kept in out_dir/test-signing."""
    if os.environ.get("XENVOL_GPG_HOME"):
        return os.environ["XENVOL_GPG_HOME"], os.environ["XENVOL_GPG_KEY"]
    home = os.path.join(out_dir, "test-signing")
    uid = "xenvol test signing key <xenvol-test@example.invalid>"
    if not os.path.exists(os.path.join(home, "pubring.kbx")):
        os.makedirs(home, mode=0o700, exist_ok=True)
        # Created "in the past" so that signatures dated SOURCE_DATE_EPOCH are valid.
        gpg(home, "--faked-system-time=1704067200!", "--gen-key", input_text="%no-protection\nKey-Type: RSA\nKey-Length: 3072\n"
            "Key-Usage: sign\nName-Real: xenvol test signing key\n"
            "Name-Email: xenvol-test@example.invalid\nExpire-Date: 0\n%commit\n")
    return home, uid


class Builder(object):
    def __init__(self, repo, out_dir, epoch, gpg_home, key_id, file_modes=None):
        self.repo = repo
        self.out = os.path.abspath(out_dir)
        self.epoch = epoch
        self.gpg_home = gpg_home
        self.key_id = key_id
        self.file_modes = file_modes or {}
        with open(os.path.join(repo, "dom0_plugins/etc/xapi.d/plugins/xenvol_dom0/VERSION")) as fh:
            self.version = fh.read().strip()
        self.uuid = update_uuid(LABEL, self.version)
        self.date = time.strftime("%a %b %d %Y", time.gmtime(epoch))
        self.faked = "--faked-system-time=%d!" % epoch

    # ------------------------------------------------------------------ RPMs
    def _payload_tree(self, root):
        """Stage the files the RPM ships; returns the %files section."""
        src = os.path.join(self.repo, "dom0_plugins")
        files, dirs = [], ["/etc/xapi.d/plugins/xenvol_dom0", "/etc/xenvol",
                           "/etc/xenvol/drivers.d"]
        for base, subdirs, names in os.walk(os.path.join(src, "etc")):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            rel = "/" + os.path.relpath(base, src)
            if rel.startswith("/etc/xapi.d/plugins/xenvol_dom0/") and rel not in dirs:
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
        for doc in ("README.md", "docs/plugin-api.md", "docs/writing-a-driver.md",
                    "examples/drivers.d/acme_gluster.py"):
            path = docs + "/" + os.path.basename(doc)
            files.append(path)
            dest = os.path.join(root, path.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(os.path.join(self.repo, doc), dest)
        lines = ["%%dir %%attr(0755,root,root) %s" % d for d in sorted(dirs)]
        for path in sorted(files):
            mode = self.file_modes.get(path, 0o755 if path == "/etc/xapi.d/plugins/xenvol" else 0o644)
            config = "%config(noreplace) " if path.startswith("/etc/logrotate.d/") else ""
            lines.append("%s%%attr(%04o,root,root) %s" % (config, mode, path))
        # Python writes bytecode next to the modules it imports; the package owns it.
        for d in sorted(dirs):
            if d.startswith("/etc/xapi.d/plugins/xenvol_dom0"):
                lines.append("%%ghost %%dir %s/__pycache__" % d)
        return "\n".join(lines)

    def _rpmbuild(self, top, template, subst):
        with open(os.path.join(self.repo, "supplemental_pack", template)) as fh:
            spec = fh.read()
        for k, v in subst.items():
            spec = spec.replace("@%s@" % k, v)
        path = os.path.join(top, "SPECS", template[:-3])
        with open(path, "w") as fh:
            fh.write(spec)
        run(["rpmbuild", "-bb", "--nodeps", "--define", "_topdir %s" % top,
             "--define", "_buildhost reproducible", "--define", "use_source_date_epoch_as_buildtime 1",
             "--define", "clamp_mtime_to_source_date_epoch 1", "--define", "_source_date_epoch_from_changelog 0",
             path], env={"SOURCE_DATE_EPOCH": str(self.epoch)})

    def build_rpms(self, top):
        for d in ("SPECS", "SOURCES", "BUILD", "RPMS", "SRPMS"):
            os.makedirs(os.path.join(top, d), exist_ok=True)
        files = self._payload_tree(os.path.join(top, "SOURCES", "root"))
        base = {"VERSION": self.version, "DATE": self.date, "LABEL": LABEL, "UUID": self.uuid}
        self._rpmbuild(top, "xenvol-xapi-plugin.spec.in", dict(base, FILES=files))
        with open(os.path.join(top, "SOURCES", "applied"), "w") as fh:
            fh.write(self.update_xml(with_key=False))
        self._rpmbuild(top, "update-stamp.spec.in", base)
        rpms = os.path.join(top, "RPMS", "noarch")
        return [os.path.join(rpms, n) for n in sorted(os.listdir(rpms))]

    def sign_rpms(self, paths):
        run(["rpmsign", "--define", "__gpg /usr/bin/gpg", "--define", "_gpg_path %s" % self.gpg_home,
             "--define", "_gpg_name %s" % self.key_id, "--define", "_gpg_digest_algo sha256",
             "--define", "_gpg_sign_cmd_extra_args %s --pinentry-mode loopback" % self.faked,
             "--rpmv3", "--addsign"] + paths)

    # ------------------------------------------------------------------ update document
    def update_xml(self, with_key=True, installation_size=0):
        root = ET.Element("update", {
            "uuid": self.uuid, "name-label": LABEL, "version": self.version,
            "installation-size": str(installation_size), "after-apply-guidance": "",
            "enforce-homogeneity": "false"})
        if with_key:
            root.set("key", KEY_FILE)
        desc = ET.SubElement(root, "name-description")
        desc.text = "xenvol %s: volume drivers for XenServer and XCP-ng (XAPI host plugin)" % \
            self.version
        return '<?xml version="1.0" ?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def groups_xml(self):
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE comps PUBLIC "-//Red Hat, '
                'Inc.//DTD Comps info//EN" "comps.dtd">\n<comps>\n  <group>\n    <id>update</id>\n'
                '    <name>%s</name>\n    <default>False</default>\n    <uservisible>True'
                '</uservisible>\n    <packagelist>\n      <packagereq type="mandatory">%s'
                '</packagereq>\n    </packagelist>\n  </group>\n</comps>\n' % (LABEL, "update-" + LABEL))

    def detach_sign(self, path):
        gpg(self.gpg_home, "--yes", "--armor", "--detach-sign", "--digest-algo", "SHA256",
            self.faked, "-u", self.key_id, "-o", path + ".asc", path)

    # ------------------------------------------------------------------ the pack
    def build(self):
        os.makedirs(self.out, exist_ok=True)
        work = tempfile.mkdtemp(prefix="xenvol-pack-")
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
            size = sum(int(run(["rpm", "-qp", "--nosignature", "--qf", "%{SIZE}", r]))
                       for r in payload)
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
            run(["createrepo_c", "--quiet", "--groupfile", groups, "--revision", str(self.epoch),
                 "--set-timestamp-to-revision", "--database", pack])
            self.detach_sign(os.path.join(pack, "update.xml"))
            self.detach_sign(os.path.join(pack, "repodata", "repomd.xml"))
            for base, dirs, names in os.walk(pack):
                for n in dirs + names:
                    os.utime(os.path.join(base, n), (self.epoch, self.epoch))
            os.utime(pack, (self.epoch, self.epoch))
            iso = os.path.join(self.out, iso_name(self.version))
            if os.path.exists(iso):
                os.unlink(iso)
            run(["xorriso", "-as", "mkisofs", "-r", "-J", "-joliet-long", "-V",
                 ("XENVOL_%s" % self.version.replace(".", "_"))[:32], "-A",
                 "xenvol supplemental pack", "-o", iso, pack],
                env={"SOURCE_DATE_EPOCH": str(self.epoch)})
            rpm = os.path.join(self.out, rpm_name(self.version))
            shutil.copyfile(os.path.join(packages, rpm_name(self.version)), rpm)
            key = os.path.join(self.out, KEY_FILE)
            shutil.copyfile(os.path.join(pack, KEY_FILE), key)
            return {"iso": iso, "rpm": rpm, "key": key, "version": self.version, "uuid": self.uuid}
        finally:
            stop_agent(self.gpg_home)
            shutil.rmtree(work, ignore_errors=True)


def build(out_dir, repo=REPO, file_modes=None):
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        raise PackError("missing %s: install Debian's rpm, createrepo-c, xorriso and gnupg"
                        % ", ".join(missing))
    home, key = signing_key(out_dir)
    return Builder(repo, out_dir, source_date_epoch(repo), home, key, file_modes).build()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m xenvol.pack.build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO, "out"))
    a = p.parse_args(argv)
    try:
        result = build(a.out)
    except PackError as e:
        sys.stderr.write("pack: %s\n" % e)
        return 1
    for k in ("iso", "rpm", "key"):
        print("%-4s %s" % (k, result[k]))
    print("update uuid %s, version %s" % (result["uuid"], result["version"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
