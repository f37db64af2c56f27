"""The supplemental pack: reproducible build, the verifier (good and broken packs), the
simulator's signature check and install, and the SSH installer against real sshd daemons."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import xenvol
from xenvol.pack import build, verify
from xenvol.pack.common import gpg, stop_agent
from conftest import FAST_SETTINGS, Pool

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in build.TOOLS + ("rpm",)),
                                reason="rpm, createrepo-c, xorriso or gnupg is not installed")
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pack"))
    result = build.build(out)
    result["out"] = out
    yield result
    stop_agent(os.path.join(out, "test-signing"))


def test_build_outputs_are_reproducible(pack, tmp_path):
    assert os.path.basename(pack["iso"]) == "xenvol-%s.iso" % pack["version"]
    assert os.path.basename(pack["rpm"]) == "xenvol-xapi-plugin-%s-1.noarch.rpm" % pack["version"]
    first = dict((k, open(pack[k], "rb").read()) for k in ("iso", "rpm"))
    again = build.build(pack["out"])  # same key, same source, same epoch
    for k in ("iso", "rpm"):
        assert open(again[k], "rb").read() == first[k], k
    with open(os.path.join(os.path.dirname(build.__file__), "..", "..", "..", "dom0_plugins",
                           "etc/xapi.d/plugins/xenvol_dom0/VERSION")) as fh:
        assert pack["version"] == fh.read().strip()


def test_verify_passes_and_the_cli_says_so(pack):
    report = verify.verify(pack["iso"])
    assert report.ok, report.text()
    assert len(report.results) > 50
    p = subprocess.run([os.path.join(BIN, "xenvol"), "pack", "verify", pack["iso"], "--key",
                        pack["key"]], stdout=subprocess.PIPE, universal_newlines=True)
    assert p.returncode == 0 and p.stdout.strip().endswith("pack OK")


def extract(iso, where):
    subprocess.check_call(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", where],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for base, dirs, names in os.walk(where):
        for n in dirs + names:
            os.chmod(os.path.join(base, n), 0o755 if n in dirs else 0o644)
    os.chmod(where, 0o755)
    return where


def remaster(tree, iso):
    subprocess.check_call(["xorriso", "-as", "mkisofs", "-r", "-J", "-joliet-long", "-o", iso,
                           tree], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return iso


def failures(iso):
    return [name for name, _detail in verify.verify(iso).failures()]


def test_verify_fails_on_broken_packs(pack, tmp_path):
    # a bad signature: update.xml changed after signing
    tree = extract(pack["iso"], str(tmp_path / "sig"))
    path = os.path.join(tree, "update.xml")
    text = open(path).read()
    with open(path, "w") as fh:
        fh.write(text.replace("volume drivers", "volume drivers, now with extras"))
    assert failures(remaster(tree, str(tmp_path / "sig.iso"))) == \
        ["signature of update.xml (GOODSIG, TRUST_ULTIMATE)"]
    # a tampered RPM: one byte of the payload changed
    tree = extract(pack["iso"], str(tmp_path / "rpm"))
    rpm = os.path.join(tree, "Packages", os.path.basename(pack["rpm"]))
    data = bytearray(open(rpm, "rb").read())
    data[-100] ^= 0xFF
    open(rpm, "wb").write(bytes(data))
    broken = failures(remaster(tree, str(tmp_path / "rpm.iso")))
    assert "package xenvol-xapi-plugin matches primary (sha256, size)" in broken
    assert "xenvol-xapi-plugin is signed by the pack key and intact" in broken
    # a missing stamp: repodata regenerated and signed again, so only the stamp is wrong
    tree = extract(pack["iso"], str(tmp_path / "stamp"))
    for n in os.listdir(os.path.join(tree, "Packages")):
        if n.startswith("update-"):
            os.unlink(os.path.join(tree, "Packages", n))
    groups = [n for n in os.listdir(os.path.join(tree, "repodata")) if n.endswith("groups.xml")][0]
    shutil.copy(os.path.join(tree, "repodata", groups), str(tmp_path / "groups.xml"))
    shutil.rmtree(os.path.join(tree, "repodata"))
    subprocess.check_call(["createrepo_c", "--quiet", "--groupfile", str(tmp_path / "groups.xml"),
                           tree])
    home = os.path.join(pack["out"], "test-signing")
    gpg(home, "--yes", "--armor", "--detach-sign", "-u", "xenvol-test@example.invalid", "-o",
        os.path.join(tree, "repodata/repomd.xml.asc"), os.path.join(tree, "repodata/repomd.xml"))
    broken = failures(remaster(tree, str(tmp_path / "stamp.iso")))
    assert broken == ["every packagereq is in the repository",
                      "stamp package update-xenvol exists"]
    # a wrong mode: the plugin built 0644
    bad = build.build(str(tmp_path / "mode"), file_modes={"/etc/xapi.d/plugins/xenvol": 0o644})
    broken = failures(bad["iso"])
    assert "/etc/xapi.d/plugins/xenvol is 0755 root:root in the package" in broken
    assert "installed plugin is executable (0755)" in broken
    stop_agent(str(tmp_path / "mode" / "test-signing"))


def dom0(pool, host, *argv):
    env = dict(os.environ, XAPISIM_HOST_ROOT=host.root,
               PATH=pool.sim.dom0_bin + ":" + os.environ["PATH"])
    return subprocess.run(list(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)


def fast(pool):
    for h in pool.sim.hosts:
        with open(os.path.join(h.root, "etc/xenvol/xenvol.conf"), "w") as fh:
            json.dump(FAST_SETTINGS, fh)


def attach_and_detach(pool, peers):
    iqn = peers.new_target(luns=(1,))
    with xenvol.Client(pool.url, "root", pool.info["password"]) as c:
        for vm in ("vm-1", "vm-3"):
            att = c.attach({"driver_volume_type": "iscsi", "data": {
                "target_portal": peers.iscsi.portal, "target_iqn": iqn, "target_lun": 1}}, vm)
            assert att.plugged
            c.detach(attachment=att)
        return c.versions()


def test_hosts_reject_an_unknown_key_then_install_and_attach(pack, peers):
    pool = Pool(hosts=3, vms=4)
    try:
        fast(pool)
        master = pool.host(0)
        p = dom0(pool, master, "xe-install-supplemental-pack", pack["iso"])
        assert p.returncode != 0 and "Invalid signature" in p.stderr
        for h in pool.sim.hosts:
            p = dom0(pool, h, "import-update-key", pack["key"])
            assert p.returncode == 0, p.stderr
        for h in pool.sim.hosts:
            p = dom0(pool, h, "xe-install-supplemental-pack", pack["iso"])
            assert p.returncode == 0, p.stderr
            p = dom0(pool, h, "xe", "host-call-plugin", "host-uuid=" + h.uuid, "plugin=xenvol",
                     "fn=version")
            assert json.loads(p.stdout)["version"] == pack["version"]
            assert os.stat(os.path.join(h.plugins_dir, "xenvol")).st_mode & 0o777 == 0o755
            assert os.path.isfile(os.path.join(h.root, "var/update/applied", pack["uuid"]))
        p = dom0(pool, master, "xe-install-supplemental-pack", pack["iso"])
        assert p.returncode != 0 and "already been applied" in p.stderr
        versions = attach_and_detach(pool, peers)
        assert set(v["version"] for v in versions.values()) == {pack["version"]}
    finally:
        pool.close()


class SSHD(object):
    """A real OpenSSH server per simulated host, on the host's address, whose shell is a
    simulated dom0 (XAPISIM_HOST_ROOT, the simulator's xe and pack commands in PATH)."""

    def __init__(self, pool, workdir):
        self.procs = []
        self.workdir = workdir
        os.makedirs(workdir)
        os.makedirs("/run/sshd", exist_ok=True)
        self.identity = os.path.join(workdir, "id_ed25519")
        subprocess.check_call(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.identity])
        self.known_hosts = os.path.join(workdir, "known_hosts")
        lines = []
        for h in pool.sim.hosts:
            d = os.path.join(workdir, "h%d" % h.index)
            os.makedirs(d)
            hk = os.path.join(d, "host_key")
            subprocess.check_call(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hk])
            lines.append("%s %s" % (h.address, " ".join(open(hk + ".pub").read().split()[:2])))
            conf = os.path.join(d, "sshd_config")
            with open(conf, "w") as fh:
                fh.write("ListenAddress %s:22\nHostKey %s\nPidFile %s/sshd.pid\n"
                         "AuthorizedKeysFile %s.pub\nPermitRootLogin prohibit-password\n"
                         "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                         "StrictModes no\nSubsystem sftp internal-sftp\n"
                         "SetEnv XAPISIM_HOST_ROOT=%s PATH=%s:/usr/sbin:/usr/bin:/sbin:/bin\n"
                         % (h.address, hk, d, self.identity, h.root, pool.sim.dom0_bin))
            log = open(os.path.join(d, "sshd.log"), "w")
            self.procs.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", conf],
                                               stdout=log, stderr=log))
        with open(self.known_hosts, "w") as fh:
            fh.write("\n".join(lines[1:]) + "\n")  # the master's key is left out on purpose
        self.master_line = lines[0]
        import socket
        import time
        for h in pool.sim.hosts:
            for _ in range(100):
                try:
                    socket.create_connection((h.address, 22), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait(timeout=10)


def test_install_over_ssh_end_to_end(pack, peers, tmp_path):
    pool = Pool(hosts=3, vms=4)
    sshd = None
    try:
        sshd = SSHD(pool, str(tmp_path / "ssh"))
        hosts = [h.address for h in pool.sim.hosts]
        cmd = [os.path.join(BIN, "xenvol"), "--json", "pack", "install"] + hosts + [
            "--iso", pack["iso"], "--key", pack["key"], "--import-key", "--identity",
            sshd.identity, "--known-hosts", sshd.known_hosts]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=300)
        # the master's host key is unknown: refused, not silently trusted
        assert p.returncode == 4
        out = json.loads(p.stdout)["details"]["hosts"]
        assert not out[0]["ok"] and "not found in known_hosts" in out[0]["message"]
        # the others need the master to trust the key first: their uploads are refused
        assert all(not r["ok"] for r in out[1:])
        with open(sshd.known_hosts, "a") as fh:
            fh.write(sshd.master_line + "\n")
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        results = json.loads(p.stdout)
        assert [r["version"] for r in results] == [pack["version"]] * 3
        assert all(r["ok"] for r in results)
        assert "uploading" in p.stderr and "done: xenvol" in p.stderr  # the progress display
        fast(pool)
        versions = attach_and_detach(pool, peers)
        assert set(v["version"] for v in versions.values()) == {pack["version"]}
        leftovers = [n for n in os.listdir("/tmp") if n.startswith("xenvol-pack-")]
        assert not leftovers
    finally:
        if sshd:
            sshd.stop()
        pool.close()
