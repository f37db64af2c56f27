"""The release: one version string agreeing with CHANGELOG.md and the plugin's API level (a
level changes only with the version), and the upgrade from the previous release's pack to
this one on the simulated pool as xapi does it (a new update uuid and NVR, yum upgrading in
place, the old update record applied nowhere)."""

import json
import os
import re
import shutil

import pytest

import xenvol
from conftest import API_LEVEL, FAST_SETTINGS, PLUGINS, REPO, Pool
from test_pack import dom0, rpm
from test_plugin_session import file_volume_in
from xenvol_pack import build
from xenvol_pack.common import rpm_name, stop_agent, update_uuid

# Every release and its plugin API level, in order. A release, once made, keeps its row; an
# API change (version.py's API_LEVEL) needs a row, so a new version (and its CHANGELOG entry).
RELEASES = [
    ("0.1.0", "1.0"),
    ("0.2.0", "1.2"),
]

with open(os.path.join(PLUGINS, "xenvol_dom0", "VERSION")) as _fh:
    VERSION = _fh.read().strip()


def _parse(v):
    return tuple(int(p) for p in v.split("."))


def changelog():
    """[(version, its text)] of CHANGELOG.md's release sections, newest first."""
    with open(os.path.join(REPO, "CHANGELOG.md")) as fh:
        text = fh.read()
    parts = re.split(r"^## (\d+\.\d+\.\d+)\b.*$", text, flags=re.M)
    return list(zip(parts[1::2], parts[2::2]))


def test_version_changelog_and_api_level_agree():
    versions = [v for v, _level in RELEASES]
    assert versions == sorted(versions, key=_parse), "RELEASES is in release order"
    assert dict(RELEASES).get(VERSION) == API_LEVEL, (
        "VERSION %s with API level %s: a changed API level is a new version (RELEASES, "
        "CHANGELOG.md)" % (VERSION, API_LEVEL)
    )
    assert RELEASES[-1][0] == VERSION, "VERSION is the newest release"
    sections = changelog()
    assert sections[0][0] == VERSION, "CHANGELOG.md's top heading is the version"
    assert [v for v, _t in sections] == versions[::-1], "one CHANGELOG entry per release"
    for version, text in sections:
        levels = set(re.findall(r"API level (\d+\.\d+)", text))
        assert levels == {dict(RELEASES)[version]}, (version, levels)
    # MINOR of the level only with a new minor (or major) version; MAJOR with a new major.
    for (v0, l0), (v1, l1) in zip(RELEASES, RELEASES[1:]):
        (a0, b0), (a1, b1) = _parse(l0), _parse(l1)
        assert (a1, b1) >= (a0, b0), "API levels never go down"
        if (a1, b1) != (a0, b0):
            assert _parse(v1)[:2] > _parse(v0)[:2], "%s -> %s: an API change is a minor" % (v0, v1)
        if a1 != a0:
            major = _parse(v1)[0] > _parse(v0)[0] or _parse(v1)[0] == 0
            assert major, "%s -> %s: a new API major is a new major version" % (v0, v1)
    # What this client needs is what the plugin offers (same major, not newer).
    level = _parse(API_LEVEL)
    assert level[0] == xenvol.plugin.REQUIRED_API[0] and level >= xenvol.plugin.REQUIRED_API
    # The client, the pack's update uuid and the RPM NVR all follow the version.
    assert xenvol.__version__ == VERSION
    assert rpm_name(VERSION) == "xenvol-xapi-plugin-%s-1.noarch.rpm" % VERSION
    uuids = set(update_uuid("xenvol", v) for v in versions)
    assert len(uuids) == len(versions), "one update uuid per version"


# ---------------------------------------------------------------------- the upgrade
needs_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in build.TOOLS + ("rpm",)),
    reason="rpm, createrepo-c, xorriso or gnupg is not installed",
)


def previous_tree(where):
    """This source tree as the previous release: its version and API level."""
    version, level = RELEASES[-2]
    for d in ("dom0_plugins", "supplemental_pack", "docs", "examples"):
        shutil.copytree(
            os.path.join(REPO, d),
            os.path.join(where, d),
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    shutil.copy(os.path.join(REPO, "README.md"), where)
    pkg = os.path.join(where, "dom0_plugins/etc/xapi.d/plugins/xenvol_dom0")
    with open(os.path.join(pkg, "VERSION"), "w") as fh:
        fh.write(version + "\n")
    path = os.path.join(pkg, "version.py")
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text.replace('API_LEVEL = "%s"' % API_LEVEL, 'API_LEVEL = "%s"' % level))
    return where


@needs_tools
def test_upgrade_from_the_previous_release(tmp_path):
    out = str(tmp_path / "out")
    old = build.build(out, repo=previous_tree(str(tmp_path / "old")), test_key=True)
    new = build.build(out, test_key=True)  # the same (test) key signs both
    assert (old["version"], new["version"]) == (RELEASES[-2][0], VERSION)
    assert old["uuid"] != new["uuid"] and old["rpm"] != new["rpm"]
    pool = Pool(hosts=2, vms=2)
    try:
        hosts = pool.sim.hosts
        for h in hosts:
            assert dom0(pool, h, "import-update-key", new["key"]).returncode == 0
            p = dom0(pool, h, "xe-install-supplemental-pack", old["iso"])
            assert p.returncode == 0, p.stderr
            with open(os.path.join(h.root, "etc/xenvol/xenvol.conf"), "w") as fh:
                json.dump(FAST_SETTINGS, fh)
        with xenvol.Client(pool.url, "root", pool.info["password"], host_cache=False) as c:
            before = c.versions()
        # This client refuses the old plugin and says how to upgrade.
        assert all(v["code"] == "PluginIncompatible" for v in before.values()), before
        assert all("xenvol pack install" in v["error"] for v in before.values())
        # The new pack: a new update next to the old one (whose files are still there).
        master = hosts[0]
        p = dom0(pool, master, "xe", "update-upload", "file-name=" + new["iso"])
        assert p.returncode == 0 and p.stdout.strip() == new["uuid"], p.stderr
        for h in hosts:
            p = dom0(pool, master, "xe", "update-apply", "uuid=" + new["uuid"], "host=" + h.uuid)
            assert p.returncode == 0, p.stderr
        for h in hosts:
            # yum upgraded in place: one of each package, the new version, rpm -V clean
            p = rpm(h, "-q", "xenvol-xapi-plugin", "update-xenvol", "control-xenvol")
            assert p.stdout.split() == [
                "%s-%s-1.noarch" % (n, VERSION)
                for n in ("xenvol-xapi-plugin", "update-xenvol", "control-xenvol")
            ], p.stdout
            applied = os.listdir(os.path.join(h.root, "var/update/applied"))
            assert applied == [new["uuid"]]
        # The new plugin answers, runs (bytecode written), and rpm -V stays clean.
        info = file_volume(hosts)
        with xenvol.Client(pool.url, "root", pool.info["password"], host_cache=False) as c:
            after = c.versions()
            assert set((v["version"], v["api_level"]) for v in after.values()) == {
                (VERSION, API_LEVEL)
            }
            att = c.attach(info, "vm-2")
            c.detach(attachment=att)
        for h in hosts:
            for pkg in ("xenvol-xapi-plugin", "update-xenvol", "control-xenvol"):
                p = rpm(h, "-V", pkg)
                assert p.returncode == 0, (pkg, p.stdout)
        # The old update record, as xapi keeps it (xapi_pool_update.ml resync_host reads
        # /var/update/applied): applied on no host, so it may be destroyed; the new one on all.
        get = ("update-param-get", "param-name=hosts")
        p = dom0(pool, master, "xe", get[0], "uuid=" + old["uuid"], get[1])
        assert p.returncode == 0 and p.stdout.strip() == "", p.stdout + p.stderr
        p = dom0(pool, master, "xe", get[0], "uuid=" + new["uuid"], get[1])
        assert sorted(p.stdout.strip().split("; ")) == sorted(h.uuid for h in hosts)
        p = dom0(pool, master, "xe", "update-destroy", "uuid=" + new["uuid"])
        assert p.returncode != 0  # UPDATE_IS_APPLIED
        p = dom0(pool, master, "xe", "update-destroy", "uuid=" + old["uuid"])
        assert p.returncode == 0, p.stderr
        p = dom0(pool, master, "xe", get[0], "uuid=" + old["uuid"], get[1])
        assert p.returncode != 0 and "uuid you supplied was invalid" in p.stderr
    finally:
        pool.close()
        stop_agent(os.path.join(out, "test-signing"))


def file_volume(hosts):
    """A file volume every host has (the SR is plugged on the VM's host and the master)."""
    return file_volume_in(h.root for h in hosts)
