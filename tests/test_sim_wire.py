"""The simulator's wire protocol and generic errors, through the PyPI XenAPI client only."""
import xmlrpc.client

import pytest
import XenAPI


def raw(pool, method, *params, url=None):
    return getattr(xmlrpc.client.ServerProxy(url or pool.url), method)(*params)


def fails(code, fn, *args, **kwargs):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args, **kwargs)
    assert e.value.details[0] == code, e.value.details
    return e.value.details


def test_login_logout_and_session_invalid(pool):
    s = pool.session()
    ref = s._session
    assert ref.startswith("OpaqueRef:")
    assert s.xenapi.session.get_this_host(ref) == pool.host(0).ref
    s.xenapi.session.logout()
    r = raw(pool, "pool.get_all", ref)
    assert r == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", ref]}


def test_unknown_session_through_the_client_is_a_401(pool):
    s = XenAPI.Session(pool.url)
    s._session = "OpaqueRef:not-a-session"
    with pytest.raises(xmlrpc.client.Fault) as e:
        s.xenapi.pool.get_all()
    assert e.value.faultCode == 401


def test_bad_password(pool):
    s = XenAPI.Session(pool.url)
    details = fails("SESSION_AUTHENTICATION_FAILED", s.login_with_password, "root", "wrong")
    assert details[1] == "root"


def test_member_answers_host_is_slave_with_master_address(pool):
    for url in pool.info["member_urls"]:
        s = XenAPI.Session(url)
        details = fails("HOST_IS_SLAVE", s.login_with_password, "root", pool.info["password"])
        assert details[1] == pool.host(0).address
        # a session from the master does not work on a member's TCP port either
        master = pool.session()
        r = raw(pool, "pool.get_all", master._session, url=url)
        assert r["ErrorDescription"] == ["HOST_IS_SLAVE", pool.host(0).address]


def test_following_host_is_slave_reaches_the_master(pool):
    """Every host listens on one port at its own address: the address HOST_IS_SLAVE gives,
    with the same scheme and port, is the master's URL, as on a real pool."""
    member = pool.info["member_urls"][1]
    details = fails("HOST_IS_SLAVE", XenAPI.Session(member).login_with_password, "root",
                    pool.info["password"])
    port = member.rsplit(":", 1)[1]
    s = XenAPI.Session("http://%s:%s" % (details[1], port))
    s.login_with_password("root", pool.info["password"])
    assert s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0]) == pool.host(0).ref
    s.xenapi.session.logout()


def test_parameter_count_mismatch(pool, xapi):
    s = pool.session()
    r = raw(pool, "VM.get_record", s._session)
    assert r["ErrorDescription"] == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "0"]
    r = raw(pool, "SR.introduce", s._session, "u", "l", "d", "t", "c")
    assert r["ErrorDescription"] == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "SR.introduce", "6", "5"]
    r = raw(pool, "session.login_with_password", "root")
    assert r["ErrorDescription"][0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"


def test_unknown_method(pool):
    s = pool.session()
    assert raw(pool, "VM.fly", s._session)["ErrorDescription"] == ["MESSAGE_METHOD_UNKNOWN", "VM.fly"]
    assert raw(pool, "Nothing.at_all", s._session)["ErrorDescription"] == \
        ["MESSAGE_METHOD_UNKNOWN", "Nothing.at_all"]
    # the session is checked before the method is reported unknown
    assert raw(pool, "VM.fly", "OpaqueRef:x")["ErrorDescription"][0] == "SESSION_INVALID"
    # read-only fields have no setter
    assert raw(pool, "VM.set_power_state", s._session, "r", "Running")["ErrorDescription"][0] \
        == "MESSAGE_METHOD_UNKNOWN"


def test_wrong_type_is_internal_error(pool, xapi):
    s = pool.session()
    r = raw(pool, "SR.introduce", s._session, "", "l", "d", "nfs", "user", "yes", {})
    assert r["ErrorDescription"][0] == "INTERNAL_ERROR"


def test_handle_and_uuid_invalid(xapi):
    fails("HANDLE_INVALID", xapi.VM.get_record, "OpaqueRef:NULL")
    details = fails("UUID_INVALID", xapi.SR.get_by_uuid, "00000000-0000-0000-0000-000000000000")
    assert details[1:] == ["SR", "00000000-0000-0000-0000-000000000000"]


def test_records_getters_and_other_config(xapi):
    vm = xapi.VM.get_by_name_label("vm-1")[0]
    rec = xapi.VM.get_record(vm)
    assert rec["name_label"] == "vm-1" and rec["power_state"] == "Running"
    assert len(rec) > 80 and isinstance(rec["memory_static_max"], str)
    assert xapi.VM.get_by_uuid(rec["uuid"]) == vm
    assert xapi.VM.get_power_state(vm) == "Running"
    assert vm in xapi.VM.get_all_records()
    xapi.VM.add_to_other_config(vm, "k", "v")
    fails("MAP_DUPLICATE_KEY", xapi.VM.add_to_other_config, vm, "k", "w")
    assert xapi.VM.get_other_config(vm)["k"] == "v"
    xapi.VM.remove_from_other_config(vm, "k")
    assert "k" not in xapi.VM.get_other_config(vm)
    host = xapi.host.get_all()[0]
    assert xapi.host.get_API_version_major(host) == "2"
    assert xapi.VM.get_VBDs(vm) == rec["VBDs"]


def test_malformed_request_is_http_500(pool):
    import urllib.request
    req = urllib.request.Request(pool.url, data=b"<not-xml", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 500
