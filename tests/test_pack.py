"""The supplemental pack: reproducible build, signing keys, the verifier (trusted keys only;
good and broken packs), the simulator's real-like install (signature, precheck with the
version gate and free space, Requires, UPDATE_ALREADY_EXISTS), rpm -V and rpm -e after the
plugin ran, and the SSH installer against real sshd daemons (~/.ssh/config, ProxyJump)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import xenvol
from conftest import FAST_SETTINGS, Pool
from xenvol_pack import build, verify
from xenvol_pack.common import PackError, gpg, key_info, stop_agent

pytestmark = [
    pytest.mark.skipif(
        not all(shutil.which(t) for t in build.TOOLS + ("rpm",)),
        reason="rpm, createrepo-c, xorriso or gnupg is not installed",
    ),
    pytest.mark.slow,  # rpmbuild, xorriso, gpg, sshd
]
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pack"))
    result = build.build(out, test_key=True)
    result["out"] = out
    yield result
    stop_agent(os.path.join(out, "test-signing"))


def test_build_outputs_are_reproducible(pack, tmp_path):
    assert os.path.basename(pack["iso"]) == "xenvol-%s.iso" % pack["version"]
    assert os.path.basename(pack["rpm"]) == "xenvol-xapi-plugin-%s-1.noarch.rpm" % pack["version"]
    assert any("NEW test key" in w for w in pack["warnings"])
    first = dict((k, open(pack[k], "rb").read()) for k in ("iso", "rpm"))
    again = build.build(pack["out"], test_key=True)  # same key, same source, same epoch
    for k in ("iso", "rpm"):
        assert open(again[k], "rb").read() == first[k], k
    # the test key is reused, never silently replaced, and says what it is
    assert again["signer"] == pack["signer"] and "NOT FOR PRODUCTION" in pack["signer"]
    assert not any("NEW" in w for w in again["warnings"])
    assert any("TEST key" in w for w in again["warnings"])
    with open(
        os.path.join(
            os.path.dirname(build.__file__),
            "..",
            "..",
            "dom0_plugins",
            "etc/xapi.d/plugins/xenvol_dom0/VERSION",
        )
    ) as fh:
        assert pack["version"] == fh.read().strip()


def test_verify_passes_and_the_cli_says_so(pack):
    report = verify.verify(pack["iso"], key=pack["key"])
    assert report.ok, report.text()
    assert len(report.results) > 50
    fpr = pack["signer"].split()[0]
    assert report.embedded.startswith(fpr) and report.signer.startswith(fpr)
    assert any("TEST key" in w for w in report.warnings)
    p = subprocess.run(
        [os.path.join(BIN, "xenvol"), "pack", "verify", pack["iso"], "--key", pack["key"]],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0 and p.stdout.strip().endswith("pack OK")
    assert "embedded key: " + fpr in p.stdout and "TEST key" in p.stderr
    # the key inside the ISO is never trusted by itself
    p = subprocess.run(
        [os.path.join(BIN, "xenvol"), "pack", "verify", pack["iso"]], capture_output=True, text=True
    )
    assert p.returncode == 6 and "no trusted key" in p.stderr and "Traceback" not in p.stderr


def release_key(home):
    os.makedirs(home, mode=0o700)
    gpg(
        home,
        "--gen-key",
        input_text="%no-protection\nKey-Type: RSA\nKey-Length: 2048\n"
        "Key-Usage: sign\nName-Real: ACME release\nName-Email: release@acme.invalid\n"
        "Expire-Date: 0\n%commit\n",
    )
    stop_agent(home)
    return home


def test_release_key_is_explicit_and_verify_trusts_only_given_keys(pack, tmp_path, monkeypatch):
    monkeypatch.delenv("XENVOL_GPG_HOME", raising=False)
    monkeypatch.delenv("XENVOL_GPG_KEY", raising=False)
    with pytest.raises(PackError, match="no signing key"):
        build.build(str(tmp_path / "nokey"))
    assert not os.path.exists(str(tmp_path / "nokey" / "test-signing"))
    with pytest.raises(PackError, match="not a xenvol source tree"):
        build.build(str(tmp_path / "x"), repo=str(tmp_path), test_key=True)
    # a release key made now, after the last commit, still signs (dated at its creation)
    home = release_key(str(tmp_path / "release"))
    created = key_info(home)[0]["created"]
    assert created > build.source_date_epoch(os.path.dirname(os.path.dirname(__file__)))
    monkeypatch.setenv("XENVOL_GPG_HOME", home)
    monkeypatch.setenv("XENVOL_GPG_KEY", "release@acme.invalid")
    rel = build.build(str(tmp_path / "rel"))
    assert rel["warnings"] == [] and "ACME release" in rel["signer"]
    report = verify.verify(rel["iso"], key=rel["key"])
    assert report.ok and report.warnings == [], report.text()
    report = verify.verify(rel["iso"], keyring=home)
    assert report.ok, report.text()
    # the same pack checked against the test key: refused, whatever key the ISO carries
    names = [n for n, _d in verify.verify(rel["iso"], key=pack["key"]).failures()]
    assert "signature of update.xml by a trusted key (GOODSIG, TRUST_ULTIMATE)" in names
    assert "the key shipped in the ISO is one you trust (yum on the host uses it)" in names
    stop_agent(home)


def extract(iso, where):
    subprocess.check_call(
        ["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", where],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for base, dirs, names in os.walk(where):
        for n in dirs + names:
            os.chmod(os.path.join(base, n), 0o755 if n in dirs else 0o644)
    os.chmod(where, 0o755)
    return where


def remaster(tree, iso):
    subprocess.check_call(
        ["xorriso", "-as", "mkisofs", "-r", "-J", "-joliet-long", "-o", iso, tree],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return iso


def failures(iso, key):
    return [name for name, _detail in verify.verify(iso, key=key).failures()]


def test_verify_fails_on_broken_packs(pack, tmp_path):
    # a bad signature: update.xml changed after signing
    tree = extract(pack["iso"], str(tmp_path / "sig"))
    path = os.path.join(tree, "update.xml")
    text = open(path).read()
    with open(path, "w") as fh:
        fh.write(text.replace("volume drivers", "volume drivers, now with extras"))
    assert failures(remaster(tree, str(tmp_path / "sig.iso")), pack["key"]) == [
        "signature of update.xml by a trusted key (GOODSIG, TRUST_ULTIMATE)"
    ]
    # a tampered RPM: one byte of the payload changed
    tree = extract(pack["iso"], str(tmp_path / "rpm"))
    rpm = os.path.join(tree, "Packages", os.path.basename(pack["rpm"]))
    data = bytearray(open(rpm, "rb").read())
    data[-100] ^= 0xFF
    open(rpm, "wb").write(bytes(data))
    broken = failures(remaster(tree, str(tmp_path / "rpm.iso")), pack["key"])
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
    subprocess.check_call(
        ["createrepo_c", "--quiet", "--groupfile", str(tmp_path / "groups.xml"), tree]
    )
    home = os.path.join(pack["out"], "test-signing")
    gpg(
        home,
        "--yes",
        "--armor",
        "--detach-sign",
        "-u",
        "xenvol-test@example.invalid",
        "-o",
        os.path.join(tree, "repodata/repomd.xml.asc"),
        os.path.join(tree, "repodata/repomd.xml"),
    )
    broken = failures(remaster(tree, str(tmp_path / "stamp.iso")), pack["key"])
    assert broken == ["every packagereq is in the repository", "stamp package update-xenvol exists"]
    # a wrong mode: the plugin built 0644
    bad = build.build(
        str(tmp_path / "mode"), file_modes={"/etc/xapi.d/plugins/xenvol": 0o644}, test_key=True
    )
    broken = failures(bad["iso"], bad["key"])
    assert "/etc/xapi.d/plugins/xenvol is 0755 root:root in the package" in broken
    assert "installed plugin is executable (0755)" in broken
    stop_agent(str(tmp_path / "mode" / "test-signing"))


def dom0(pool, host, *argv):
    env = dict(
        os.environ, XAPISIM_HOST_ROOT=host.root, PATH=pool.sim.dom0_bin + ":" + os.environ["PATH"]
    )
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=120)


def fast(pool):
    for h in pool.sim.hosts:
        with open(os.path.join(h.root, "etc/xenvol/xenvol.conf"), "w") as fh:
            json.dump(FAST_SETTINGS, fh)


def attach_and_detach(pool, peers):
    iqn = peers.new_target(luns=(1,))
    with xenvol.Client(pool.url, "root", pool.info["password"]) as c:
        for vm in ("vm-1", "vm-3"):
            att = c.attach(
                {
                    "driver_volume_type": "iscsi",
                    "data": {
                        "target_portal": peers.iscsi.portal,
                        "target_iqn": iqn,
                        "target_lun": 1,
                    },
                },
                vm,
            )
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
            p = dom0(
                pool,
                h,
                "xe",
                "host-call-plugin",
                "host-uuid=" + h.uuid,
                "plugin=xenvol",
                "fn=version",
            )
            assert json.loads(p.stdout)["version"] == pack["version"]
            assert os.stat(os.path.join(h.plugins_dir, "xenvol")).st_mode & 0o777 == 0o755
            assert os.path.isfile(os.path.join(h.root, "var/update/applied", pack["uuid"]))
        p = dom0(pool, master, "xe-install-supplemental-pack", pack["iso"])
        assert p.returncode != 0 and "already been applied" in p.stderr
        versions = attach_and_detach(pool, peers)
        assert set(v["version"] for v in versions.values()) == {pack["version"]}
        # The plugin ran (Python wrote bytecode next to its modules): rpm -V stays clean and
        # removal leaves nothing behind.
        for h in pool.sim.hosts:
            caches = [
                n
                for b, _d, ns in os.walk(os.path.join(h.plugins_dir, "xenvol_dom0"))
                for n in ns
                if n.endswith(".pyc")
            ]
            assert caches
            p = rpm(h, "-V", "xenvol-xapi-plugin")
            assert p.returncode == 0, p.stdout
            p = rpm(h, "-e", "update-xenvol", "xenvol-xapi-plugin", "control-xenvol")
            assert p.returncode == 0, p.stdout
            assert not os.path.exists(os.path.join(h.plugins_dir, "xenvol_dom0"))
            assert not os.path.exists(os.path.join(h.root, "var/update/applied", pack["uuid"]))
        p = dom0(pool, master, "xe", "update-param-get", "uuid=" + pack["uuid"], "param-name=hosts")
        assert p.stdout.strip() == ""  # xapi reads /var/update/applied: applied nowhere now
    finally:
        pool.close()


def rpm(host, *args):
    return subprocess.run(
        ["rpm", "--force-debian", "--root", host.root, "--dbpath", "/var/lib/rpm"] + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def set_product_version(host, version):
    path = os.path.join(host.root, "etc/xensource-inventory")
    text = open(path).read().replace("PRODUCT_VERSION='8.3.0'", "PRODUCT_VERSION='%s'" % version)
    open(path, "w").write(text)


def resigned(pack, tmp_path, name, edit):
    """The pack with update.xml edited and signed again with the same (test) key."""
    tree = extract(pack["iso"], str(tmp_path / name))
    path = os.path.join(tree, "update.xml")
    with open(path) as fh:
        text = edit(fh.read())
    with open(path, "w") as fh:
        fh.write(text)
    gpg(
        os.path.join(pack["out"], "test-signing"),
        "--yes",
        "--armor",
        "--detach-sign",
        "-u",
        "xenvol-test@example.invalid",
        "-o",
        path + ".asc",
        path,
    )
    return remaster(tree, str(tmp_path / (name + ".iso")))


def test_hosts_install_as_real_ones_do(pack, tmp_path):
    """Version gate, free space, Requires against installed packages, UPDATE_ALREADY_EXISTS."""
    pool = Pool(hosts=3, vms=2)
    try:
        for h in pool.sim.hosts:
            assert dom0(pool, h, "import-update-key", pack["key"]).returncode == 0
        h0, h1, h2 = pool.sim.hosts
        # XCP-ng 8.2 / Citrix Hypervisor 8.2: the control package's product-version gate
        set_product_version(h1, "8.2.1")
        p = dom0(pool, h1, "xe-install-supplemental-pack", pack["iso"])
        # (xe prints the error's text: UPDATE_PRECHECK_FAILED_WRONG_SERVER_VERSION)
        assert p.returncode != 0 and "incorrect version" in p.stderr
        assert "required_version : product-version >= 8.3.0" in p.stderr
        assert not os.path.exists(os.path.join(h1.plugins_dir, "xenvol"))
        # the failed install cleaned up and destroyed the update (no host has it)
        p = dom0(pool, h0, "xe", "update-param-get", "uuid=" + pack["uuid"], "param-name=hosts")
        assert p.returncode != 0 and "uuid you supplied was invalid" in p.stderr
        # a second upload while the first one's files are still there: UPDATE_ALREADY_EXISTS
        p = dom0(pool, h0, "xe", "update-upload", "file-name=" + pack["iso"])
        assert p.returncode == 0 and p.stdout.strip() == pack["uuid"]
        p = dom0(pool, h0, "xe-install-supplemental-pack", pack["iso"])
        assert p.returncode != 0 and "update already exists" in p.stderr
        assert (
            dom0(
                pool, h0, "xe", "update-precheck", "uuid=" + pack["uuid"], "host=" + h2.uuid
            ).stdout.strip()
            == "ok"
        )
        # Requires resolved against what the host has installed: no xapi-core, no install
        assert rpm(h2, "-e", "--justdb", "--nodeps", "xapi-core").returncode == 0
        p = dom0(pool, h0, "xe", "update-apply", "uuid=" + pack["uuid"], "host=" + h2.uuid)
        assert p.returncode != 0 and "failed to apply" in p.stderr
        assert "xapi-core is needed by xenvol-xapi-plugin" in p.stderr
        assert not os.path.exists(os.path.join(h2.plugins_dir, "xenvol"))
        assert dom0(pool, h0, "xe", "update-pool-clean", "uuid=" + pack["uuid"]).returncode == 0
        assert dom0(pool, h0, "xe", "update-destroy", "uuid=" + pack["uuid"]).returncode == 0
        # installation-size larger than dom0's free space
        huge = resigned(
            pack,
            tmp_path,
            "huge",
            lambda t: t.replace('installation-size="', 'installation-size="9' * 1 + "0" * 17),
        )
        p = dom0(pool, h0, "xe-install-supplemental-pack", huge)
        assert p.returncode != 0 and "not have enough space" in p.stderr
        # and on a host that has what the pack needs, it installs
        p = dom0(pool, h0, "xe-install-supplemental-pack", pack["iso"])
        assert p.returncode == 0, p.stderr
        assert (
            rpm(
                h0, "-q", "xenvol-xapi-plugin", "control-xenvol", "update-xenvol", "xcp-ng-release"
            ).returncode
            == 0
        )
    finally:
        pool.close()


class SSHD:
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
                fh.write(
                    "ListenAddress %s:22\nHostKey %s\nPidFile %s/sshd.pid\n"
                    "AuthorizedKeysFile %s.pub\nPermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                    "StrictModes no\nSubsystem sftp internal-sftp\n"
                    "SetEnv XAPISIM_HOST_ROOT=%s PATH=%s:/usr/sbin:/usr/bin:/sbin:/bin\n"
                    % (h.address, hk, d, self.identity, h.root, pool.sim.dom0_bin)
                )
            log = open(os.path.join(d, "sshd.log"), "w")
            self.procs.append(
                subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", conf], stdout=log, stderr=log)
            )
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
        before = set(n for n in os.listdir("/tmp") if n.startswith("xenvol-pack-"))
        # Hosts by ~/.ssh/config alias: one direct, one through a ProxyJump, one through a
        # ProxyCommand. The host uuid comes from each host's inventory, not from the address.
        config = str(tmp_path / "ssh_config")
        with open(config, "w") as fh:
            fh.write(
                "Host xs-*\n  User root\n  IdentityFile %s\n"
                "Host xs-a\n  HostName 127.0.0.1\n"
                "Host xs-b\n  HostName 127.0.0.2\n  ProxyJump xs-c\n"
                "Host xs-c\n  HostName 127.0.0.3\n  ProxyCommand ssh -q -i %s -o "
                "BatchMode=yes -o UserKnownHostsFile=%s root@127.0.0.2 -W %%h:%%p\n"
                % (sshd.identity, sshd.identity, sshd.known_hosts)
            )
        sr = [r["uuid"] for r in pool.session().xenapi.SR.get_all_records().values()][0]
        cmd = [
            os.path.join(BIN, "xenvol"),
            "--json",
            "pack",
            "install",
            "xs-a",
            "xs-b",
            "xs-c",
            "--iso",
            pack["iso"],
            "--key",
            pack["key"],
            "--import-key",
            "--sr",
            sr,
            "--ssh-config",
            config,
            "--known-hosts",
            sshd.known_hosts,
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        # the master's host key is unknown: refused, not silently trusted; a pack failure
        # has its own exit code
        assert p.returncode == 6, p.stdout + p.stderr
        out = json.loads(p.stdout)["details"]["hosts"]
        assert not out[0]["ok"] and "not found in known_hosts" in out[0]["message"]
        # the others need the master to trust the key first: their uploads are refused
        assert all(not r["ok"] for r in out[1:])
        assert "Invalid signature" in out[1]["message"]
        assert "TEST key" in p.stderr  # the installer warns about the test key
        with open(sshd.known_hosts, "a") as fh:
            fh.write(sshd.master_line + "\n")
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        results = json.loads(p.stdout)
        assert [r["version"] for r in results] == [pack["version"]] * 3
        assert all(r["ok"] for r in results)
        assert "uploading" in p.stderr and "done: xenvol" in p.stderr  # the progress display
        fast(pool)
        versions = attach_and_detach(pool, peers)
        assert set(v["version"] for v in versions.values()) == {pack["version"]}
        # (other test runs on this machine may upload at the same time: only ours count)
        leftovers = [
            n for n in os.listdir("/tmp") if n.startswith("xenvol-pack-") and n not in before
        ]
        assert not leftovers
    finally:
        if sshd:
            sshd.stop()
        pool.close()
