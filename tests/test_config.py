"""/etc/xenvol/xenvol.conf validated on load (issue 22 §4): a syntax error, a wrong type, a
value out of range or an unknown key is XENVOL_INVALID_CONFIG naming the file, the key and
the value, through the real path; check_config and `xenvol version` show each host's state;
the schema published in docs/plugin-api.md is the one the plugin validates with."""

import json
import os
import re
import sys

import pytest

import xenvol
from conftest import FAST_SETTINGS, PLUGINS, REPO, PluginError, plugin, state

sys.path.insert(0, PLUGINS)
from xenvol_dom0 import settings

CONF = "/etc/xenvol/xenvol.conf"


def write_conf(host, text):
    with open(os.path.join(host.root, "etc/xenvol/xenvol.conf"), "w") as fh:
        fh.write(text)


def file_info(ppool, tmp_path):
    d = tmp_path / "vols"
    return {"driver_volume_type": "file", "data": {"path": str(d)}}


def refused(xapi, host, fn, **args):
    with pytest.raises(PluginError) as e:
        plugin(xapi, host, fn, **args)
    assert e.value.code == "XENVOL_INVALID_CONFIG", e.value.message
    return e.value


def test_a_trailing_comma_is_named_with_its_line_and_column(ppool):
    xapi = ppool.session().xenapi
    host = ppool.host(1)
    write_conf(host, '{\n  "lock_timeout": 60,\n  "file_roots": ["/srv/vols"],\n}\n')
    before = state(ppool)
    e = refused(xapi, host, "list_attachments")
    assert e.message == (
        "%s: not valid JSON: line 4 column 1: Expecting property name enclosed in "
        "double quotes (a trailing comma?)" % CONF
    )
    assert e.details["file"] == CONF
    assert (e.details["line"], e.details["column"]) == (4, 1)
    # A changing call refuses before anything changes.
    vm = xapi.VM.get_by_name_label("vm-2")[0]
    refused(
        xapi,
        host,
        "attach_volume",
        vm_uuid=xapi.VM.get_uuid(vm),
        connection_info={"driver_volume_type": "file", "data": {"path": "/srv/vols"}},
    )
    assert state(ppool) == before
    out = plugin(xapi, host, "check_config")
    assert (out["state"], out["valid"], out["settings"]) == ("invalid", False, None)
    assert out["problems"][0]["line"] == 4
    v = plugin(xapi, host, "version")
    assert v["config"]["state"] == "invalid"
    assert "line 4 column 1" in v["config"]["error"]
    # The other hosts are unaffected.
    assert plugin(xapi, ppool.host(0), "version")["config"] == {"state": "ok"}
    plugin(xapi, ppool.host(0), "list_attachments")


@pytest.mark.parametrize(
    "conf, key, value, problem",
    [
        ({"lock_timeout": "abc"}, "lock_timeout", "abc", "must be a number from 1 to 86400"),
        ({"unplug_attempts": 0}, "unplug_attempts", 0, "must be from 1 to 1000"),
        ({"unplug_attempts": True}, "unplug_attempts", True, "must be an integer from 1 to 1000"),
        ({"lun_rescan_delays": [1, "2"]}, "lun_rescan_delays", [1, "2"], "entry 1 must be"),
        ({"file_roots": "/srv"}, "file_roots", "/srv", "must be a list of strings"),
        ({"file_roots": ["srv"]}, "file_roots", ["srv"], "entry 0 must be an absolute path"),
        ({"placement": "everywhere"}, "placement", "everywhere", "must be one of host, pool"),
        ({"allow_encrypted": "yes"}, "allow_encrypted", "yes", "must be true or false"),
        ({"allowed_sr_uuids": ["nope"]}, "allowed_sr_uuids", ["nope"], "entry 0 must be a uuid"),
        ({"lock_timout": 30}, "lock_timout", 30, "is not a setting (known: "),
    ],
)
def test_a_bad_value_names_file_key_and_value(ppool, conf, key, value, problem):
    xapi = ppool.session().xenapi
    host = ppool.host(0)
    write_conf(host, json.dumps(dict(FAST_SETTINGS, **conf)))
    e = refused(xapi, host, "gc")
    assert e.message.startswith("%s: %s: %s" % (CONF, key, problem)), e.message
    assert e.message.endswith("(got %s)" % json.dumps(value))
    assert e.details == {"file": CONF, "key": key, "value": value, "problems": 1}
    out = plugin(xapi, host, "check_config")
    assert [(p["key"], p["value"]) for p in out["problems"]] == [(key, value)]


def test_every_problem_is_listed_and_a_good_file_is_in_force(ppool):
    xapi = ppool.session().xenapi
    host = ppool.host(2)
    write_conf(host, json.dumps({"lock_timeout": -1, "placement": 3, "colour": "red"}))
    e = refused(xapi, host, "connector")
    assert "(and 2 more: xe host-call-plugin ... fn=check_config)" in e.message
    out = plugin(xapi, host, "check_config")
    assert [p["key"] for p in out["problems"]] == ["colour", "lock_timeout", "placement"]
    assert all(p["message"].startswith(CONF + ": ") for p in out["problems"])
    write_conf(host, json.dumps({"lock_timeout": 30, "placement": "pool"}))
    out = plugin(xapi, host, "check_config")
    assert (out["state"], out["problems"]) == ("ok", [])
    assert out["settings"] == dict(settings.DEFAULTS, lock_timeout=30, placement="pool")
    os.unlink(os.path.join(host.root, "etc/xenvol/xenvol.conf"))
    out = plugin(xapi, host, "check_config")
    assert (out["state"], out["settings"]) == ("absent", settings.DEFAULTS)
    assert plugin(xapi, host, "version")["config"] == {"state": "absent"}


def test_the_client_raises_invalid_config_and_the_cli_shows_each_host(ppool, monkeypatch, capsys):
    from xenvol import cli

    host = ppool.host(1)
    write_conf(host, '{"lock_timeout": "abc"}')
    with xenvol.Client(ppool.url, "root", ppool.info["password"], verify_tls=False) as client:
        with pytest.raises(xenvol.errors.InvalidConfig) as e:
            client.attachments()
        assert e.value.details["key"] == "lock_timeout"
        assert e.value.host == host.uuid
        versions = client.versions()
    assert versions[host.uuid]["config"]["state"] == "invalid"
    assert versions[ppool.host(0).uuid]["config"] == {"state": "ok"}
    monkeypatch.setenv("XENVOL_PASSWORD", ppool.info["password"])
    assert cli.main(["--url", ppool.url, "version"]) == 5
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[1].split()[:5] == ["HOST", "HOST_UUID", "VERSION", "API_LEVEL", "CONFIG"]
    assert [line.split()[4] for line in lines[2:]] == ["ok", "INVALID", "ok"]
    assert err.strip() == (
        "xenvol: warning: host xs02: %s: lock_timeout: must be a number from 1 to 86400 "
        '(got "abc")' % CONF
    )
    assert cli.main(["--url", ppool.url, "--json", "version"]) == 5
    data = json.loads(capsys.readouterr().out)
    assert data["hosts"][host.uuid]["config"]["state"] == "invalid"


def test_the_published_schema_is_the_one_the_plugin_validates_with():
    text = open(os.path.join(REPO, "docs", "plugin-api.md")).read()
    block = re.search(r"<!-- config-schema -->\n```json\n(.*?)```", text, re.S).group(1)
    assert json.loads(block) == settings.json_schema()
    # and the defaults are valid under it
    for s in settings.SCHEMA:
        assert s.problem(s.default) is None, s.key
