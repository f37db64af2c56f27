"""host.call_plugin: the exec protocol, results, failures and sessions, as xapi does them."""
import os
import stat
import textwrap

import pytest

from test_sim_wire import fails

PLUGIN = textwrap.dedent('''\
    #!/usr/bin/python3
    import json
    import sys
    import XenAPIPlugin

    def echo(session, args):
        return json.dumps(args, sort_keys=True)

    def fail(session, args):
        raise XenAPIPlugin.Failure("XENVOL_TEST", ["a", "b"])

    def boom(session, args):
        raise ValueError("kaput")

    def nothing(session, args):
        return None

    def host_of(session, args):
        ref = session.xenapi.session.get_this_host(session._session)
        return session.xenapi.host.get_uuid(ref) + " " + session._session

    def vms(session, args):
        return str(len(session.xenapi.VM.get_all()))

    def chatty(session, args):
        print("hello")
        return "x"

    def die(session, args):
        sys.exit(3)

    if __name__ == "__main__":
        XenAPIPlugin.dispatch({"echo": echo, "fail": fail, "boom": boom, "nothing": nothing,
                               "host_of": host_of, "vms": vms, "chatty": chatty, "die": die})
    ''')


def install(pool, name, text, mode=0o755):
    for h in pool.sim.hosts:
        path = os.path.join(h.plugins_dir, name)
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, mode)


@pytest.fixture
def plugin(pool):
    install(pool, "probe", PLUGIN)
    return "probe"


def call(xapi, pool, fn, args=None, host=0, name="probe"):
    return xapi.host.call_plugin(pool.host(host).ref, name, fn, args or {})


def test_success_roundtrip_of_the_string_map(pool, xapi, plugin):
    args = {"a": "1", "empty": "", "xml": "<&>\"'", "uni": "é€"}
    assert call(xapi, pool, "echo", args) == \
        '{"a": "1", "empty": "", "uni": "\\u00e9\\u20ac", "xml": "<&>\\"\'"}'


def test_plugin_failure_passes_through(pool, xapi, plugin):
    assert fails("XENVOL_TEST", call, xapi, pool, "fail")[1:] == ["a", "b"]


def test_exception_becomes_xenapi_plugin_failure(pool, xapi, plugin):
    assert fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "boom")[1:] == \
        ["boom", "ValueError", "kaput"]
    d = fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "nothing")
    assert d[1:3] == ["nothing", "TypeError"]


def test_unknown_function_and_missing_plugin(pool, xapi, plugin):
    assert fails("UNKNOWN_XENAPI_PLUGIN_FUNCTION", call, xapi, pool, "nope")[1] == "nope"
    assert fails("XENAPI_MISSING_PLUGIN", call, xapi, pool, "echo", name="absent")[1] == "absent"
    # no ".py" is appended and no path escapes the plugins directory
    fails("XENAPI_MISSING_PLUGIN", call, xapi, pool, "echo", name="probe.py")
    fails("XENAPI_MISSING_PLUGIN", call, xapi, pool, "echo", name="../plugins/probe")


def test_crash_and_bad_output(pool, xapi, plugin):
    install(pool, "broken", "#!/usr/bin/python3\nimport nosuchmodule\n")
    d = fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "x", name="broken")
    assert d[1] == "non-zero exit" and "nosuchmodule" in d[3]
    d = fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "die")
    assert d[1] == "non-zero exit"
    d = fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "chatty")
    assert d[1] == "failed to parse plugin output" and d[2].startswith("hello")
    install(pool, "noexec", PLUGIN, mode=0o644)
    assert fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "echo", name="noexec")[1] == \
        "non-zero exit"
    install(pool, "killed", "#!/bin/sh\nkill -9 $$\n")
    assert fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "x", name="killed")[1] == \
        "signal: SIGKILL"
    install(pool, "intval", "#!/bin/sh\necho '<methodResponse><params><param><value><struct>"
            "<member><name>Status</name><value>Success</value></member><member><name>Value"
            "</name><value><int>3</int></value></member></struct></value></param></params>"
            "</methodResponse>'\n")
    fails("INTERNAL_ERROR", call, xapi, pool, "x", name="intval")


def test_plugin_calls_back_with_the_given_session(pool, xapi, plugin):
    s = pool.session()
    out = s.xenapi.host.call_plugin(pool.host(0).ref, "probe", "host_of", {})
    host_uuid, session = out.split()
    assert host_uuid == pool.host(0).uuid and session == s._session
    # on a member the plugin gets a temporary pool session that dies after the call
    out = s.xenapi.host.call_plugin(pool.host(2).ref, "probe", "host_of", {})
    host_uuid, session = out.split()
    assert host_uuid == pool.host(2).uuid and session != s._session
    assert session not in pool.sim.sessions
    assert call(xapi, pool, "vms", host=1) == "7"
    counts = pool.admin.counts()
    assert counts["VM.get_all"] == {"plugin": 1}


def test_argv_is_the_xml_call_and_is_recorded(pool, xapi, plugin):
    call(xapi, pool, "echo", {"k": "v"}, host=1)
    entry = pool.admin.plugin_argv()[-1]
    assert entry["host"] == pool.host(1).uuid and entry["fn"] == "echo"
    assert entry["argv"][0].endswith("/etc/xapi.d/plugins/probe")
    assert entry["argv"][1].startswith("<methodCall><methodName>echo</methodName>")
    assert "<member><name>k</name><value>v</value></member>" in entry["argv"][1]
    assert stat.S_IMODE(os.stat(entry["argv"][0]).st_mode) == 0o755
