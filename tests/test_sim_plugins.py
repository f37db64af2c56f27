"""host.call_plugin: the exec protocol, results, failures and sessions, as xapi does them,
with the plugin in its host's dom0 view under dom0's Python."""

import json
import os
import stat
import textwrap

import pytest

from conftest import plugin_python
from test_sim_wire import fails

PLUGIN = textwrap.dedent("""\
    #!/usr/bin/python3
    import io
    import json
    import os
    import sys
    import time
    import XenAPI
    import XenAPIPlugin

    # xapi gives no LANG: on Python 3.6 argv and stdout are ASCII (xenvol's entry.utf8_io)
    sys.argv[1:] = [os.fsencode(a).decode("utf-8") for a in sys.argv[1:]]
    sys.stdout = io.open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)

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

    def fail_tuple(session, args):
        raise XenAPIPlugin.Failure("X", ("a",))

    def fail_str(session, args):
        raise XenAPIPlugin.Failure("X", "ab")

    def fail_int(session, args):
        raise XenAPIPlugin.Failure("X", ["a", 3])

    def fail_none(session, args):
        raise XenAPIPlugin.Failure("X", ["a", None])

    def five(session, args):
        return 5

    def where(session, args):
        return json.dumps({"argv0": sys.argv[0], "env": dict(os.environ),
                           "python": "%d.%d" % sys.version_info[:2],
                           "names": sorted(n for n in dir(XenAPIPlugin) if not n.startswith("_")),
                           "inventory": open("/etc/xensource-inventory").read(),
                           "socket": os.path.exists("/var/lib/xcp/xapi")})

    def local_login(session, args):
        own = XenAPI.xapi_local()
        own.xenapi.login_with_password(args.get("user", "root"), "", "", "probe")
        rec = own.xenapi.session.get_record(own._session)
        own.xenapi.session.logout()
        return json.dumps({"ref": rec["uuid"], "this_host": rec["this_host"],
                           "is_local_superuser": rec["is_local_superuser"], "pool": rec["pool"],
                           "auth_user_name": rec["auth_user_name"],
                           "originator": rec["originator"]})

    def hold(session, args):
        # Until the test drops /var/tmp/release in this host's dom0 (at most 60 s).
        for _ in range(600):
            if os.path.exists("/var/tmp/release"):
                break
            time.sleep(0.1)
        return "held"

    if __name__ == "__main__":
        XenAPIPlugin.dispatch({"hold": hold, "echo": echo, "fail": fail, "boom": boom,
                               "nothing": nothing, "host_of": host_of, "vms": vms,
                               "chatty": chatty, "die": die,
                               "fail_tuple": fail_tuple, "fail_str": fail_str,
                               "fail_int": fail_int, "fail_none": fail_none, "five": five,
                               "where": where, "local_login": local_login})
    """)


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
    assert (
        call(xapi, pool, "echo", args)
        == '{"a": "1", "empty": "", "uni": "\\u00e9\\u20ac", "xml": "<&>\\"\'"}'
    )


def test_plugin_failure_passes_through(pool, xapi, plugin):
    assert fails("XENVOL_TEST", call, xapi, pool, "fail")[1:] == ["a", "b"]


def test_exception_becomes_xenapi_plugin_failure(pool, xapi, plugin):
    assert fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "boom")[1:] == [
        "boom",
        "ValueError",
        "kaput",
    ]
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
    assert (
        fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "echo", name="noexec")[1]
        == "non-zero exit"
    )
    install(pool, "killed", "#!/bin/sh\nkill -9 $$\n")
    assert (
        fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "x", name="killed")[1] == "signal: SIGKILL"
    )
    install(
        pool,
        "intval",
        "#!/bin/sh\necho '<methodResponse><params><param><value><struct>"
        "<member><name>Status</name><value>Success</value></member><member><name>Value"
        "</name><value><int>3</int></value></member></struct></value></param></params>"
        "</methodResponse>'\n",
    )
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
    # xapi_plugins.ml call_plugin execs Xapi_globs.xapi_plugins_root/<name>
    assert entry["argv"][0] == "/etc/xapi.d/plugins/probe"
    assert entry["argv"][1].startswith("<methodCall><methodName>echo</methodName>")
    assert "<member><name>k</name><value>v</value></member>" in entry["argv"][1]
    assert stat.S_IMODE(os.stat(os.path.join(pool.host(1).plugins_dir, "probe")).st_mode) == 0o755


# ---------------------------------------------------------------------- the runtime
def test_failure_marshalling_is_the_real_xenapiplugin(pool, xapi, plugin):
    # xen-api python3/examples/XenAPIPlugin.py: Failure() does [code] + params ...
    for fn, kind in (("fail_tuple", "tuple"), ("fail_str", "str")):
        d = fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, fn)
        assert d[1:] == [fn, "TypeError", 'can only concatenate list (not "%s") to list' % kind]
    # ... failure_message() marshals what it is given: xapi refuses a non-string ...
    assert "string list" in fails("INTERNAL_ERROR", call, xapi, pool, "fail_int")[1]
    # ... and None raises inside the except handler: the plugin dies with a traceback
    d = fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "fail_none")
    assert d[1:3] == ["non-zero exit", ""] and "cannot marshal None" in d[3]
    fails("INTERNAL_ERROR", call, xapi, pool, "five")


def test_plugin_sees_its_hosts_dom0_and_only_xapis_environment(pool, xapi, plugin):
    for i in (0, 2):
        seen = json.loads(call(xapi, pool, "where", host=i))
        assert seen["argv0"] == "/etc/xapi.d/plugins/probe"
        assert "INSTALLATION_UUID='%s'" % pool.host(i).uuid in seen["inventory"]
        assert seen["socket"] is True
        # forkhelpers.ml default_path_env_pair: PATH and nothing else (tracing off)
        assert seen["env"] == {"PATH": "/sbin:/usr/sbin:/bin:/usr/bin"}
        # the module exports what the real one does, and nothing more
        assert seen["names"] == [
            "Failure",
            "XenAPI",
            "dispatch",
            "failure_message",
            "print_function",
            "success_message",
            "sys",
            "xmlrpclib",
        ]


def test_plugins_run_under_dom0_python_3_6(pool, xapi, plugin):
    python, version = plugin_python()
    if not version.startswith("3.6."):
        pytest.skip(
            "no CPython 3.6 for dom0's Python (make deps builds .venv-dom0 where a "
            "python3.6 exists); plugins ran under %s %s" % (python, version)
        )
    assert json.loads(call(xapi, pool, "where"))["python"] == "3.6"


def test_a_directory_named_as_plugin_fails_at_exec(pool, xapi, plugin):
    # find_plugin accepts any readdir entry; vfork_helper.c's execv fails with EACCES
    # (exit 126), and xapi reports ["non-zero exit"; stdout; stderr], both empty.
    for h in pool.sim.hosts:
        os.mkdir(os.path.join(h.plugins_dir, "adir"))
    assert fails("XENAPI_PLUGIN_FAILURE", call, xapi, pool, "x", name="adir")[1:] == [
        "non-zero exit",
        "",
        "",
    ]


def test_local_superuser_login_over_the_unix_socket(pool, xapi, plugin):
    # xapi_session.ml login_with_password: over the unix socket (preauth root) no password is
    # checked and any user name is taken; the session is local-superuser, not a pool session,
    # on this host, also on a member (a member's xapi logs in locally, no HOST_IS_SLAVE).
    before = set(pool.sim.sessions)
    for i, user in ((0, "root"), (2, "someone")):
        rec = json.loads(call(xapi, pool, "local_login", {"user": user}, host=i))
        assert rec["this_host"] == pool.host(i).ref and rec["is_local_superuser"] is True
        assert rec["pool"] is False and rec["auth_user_name"] == user
        assert rec["originator"] == "probe"
    assert set(pool.sim.sessions) == before


def test_vm_call_host_plugin_runs_on_the_vms_host(pool, xapi, plugin):
    # xen-api message_forwarding.ml VM.call_host_plugin: forwarded to the resident host.
    for name in ("vm-1", "vm-3"):
        vm = xapi.VM.get_by_name_label(name)[0]
        if xapi.VM.get_power_state(vm) != "Running":
            continue
        host = xapi.VM.get_resident_on(vm)
        out = xapi.VM.call_host_plugin(vm, "probe", "host_of", {})
        assert out.split()[0] == xapi.host.get_uuid(host)
        assert xapi.VM.get_current_operations(vm) == {}


def test_vm_call_host_plugin_needs_a_running_vm(pool, xapi, plugin):
    vm = xapi.VM.get_by_name_label("vm-2")[0]
    # message_forwarding.ml: Record_util.vm_power_state_to_string, capitalised
    assert fails("VM_BAD_POWER_STATE", xapi.VM.call_host_plugin, vm, "probe", "echo", {})[1:] == [
        vm,
        "Running",
        "Halted",
    ]


def test_vm_call_host_plugin_is_one_vm_operation_at_a_time(pool, xapi, plugin):
    # with_vm_operation ~op:`call_plugin ~policy:fail_immediately; call_plugin is allowed
    # concurrently with nothing (xapi_vm_lifecycle.ml is_allowed_concurrently).
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    host = pool.sim.host(xapi.VM.get_resident_on(vm))
    task = xapi.Async.VM.call_host_plugin(vm, "probe", "hold", {})
    while not xapi.VM.get_current_operations(vm):
        assert xapi.task.get_status(task) == "pending"
    assert list(xapi.VM.get_current_operations(vm).values()) == ["call_plugin"]
    details = fails(
        "OTHER_OPERATION_IN_PROGRESS", xapi.VM.call_host_plugin, vm, "probe", "echo", {}
    )
    assert details[1:4] == ["VM", vm, "call_plugin"]
    os.makedirs(os.path.join(host.root, "var/tmp"), exist_ok=True)
    open(os.path.join(host.root, "var/tmp/release"), "w").close()
    while xapi.task.get_status(task) == "pending":
        pass
    assert xapi.task.get_status(task) == "success"
    assert xapi.VM.get_current_operations(vm) == {}
