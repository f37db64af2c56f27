"""The simulator's wire protocol and generic errors: through the PyPI XenAPI client, and byte for
byte over raw HTTP."""

import json
import socket
import urllib.parse
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


@pytest.mark.slow
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
    details = fails(
        "HOST_IS_SLAVE", XenAPI.Session(member).login_with_password, "root", pool.info["password"]
    )
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
    assert raw(pool, "VM.fly", s._session)["ErrorDescription"] == [
        "MESSAGE_METHOD_UNKNOWN",
        "VM.fly",
    ]
    assert raw(pool, "Nothing.at_all", s._session)["ErrorDescription"] == [
        "MESSAGE_METHOD_UNKNOWN",
        "Nothing.at_all",
    ]
    # the session is checked before the method is reported unknown
    assert raw(pool, "VM.fly", "OpaqueRef:x")["ErrorDescription"][0] == "SESSION_INVALID"
    # read-only fields have no setter
    assert (
        raw(pool, "VM.set_power_state", s._session, "r", "Running")["ErrorDescription"][0]
        == "MESSAGE_METHOD_UNKNOWN"
    )


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


# ---------------------------------------------------------------- the wire, byte for byte
# xapi writes with ocaml-rpc (Xmlrpc.string_of_response, Jsonrpc.string_of_response) and frames
# with http-lib (http_svr.ml); the expected bytes below are what those functions produce.
OK_HEADERS = (
    "connection: keep-alive\r\ncache-control: no-cache, no-store\r\n"
    "content-type: %s\r\nAccess-Control-Allow-Origin: *\r\n"
    "Access-Control-Allow-Headers: X-Requested-With\r\n\r\n"
)
MAX_RPC_SIZE = 300 * 1024


def http(pool, body, path="/", version="1.1", length=True, send_body=True):
    """One POST on a fresh connection; returns (head, body) of the answer as bytes."""
    u = urllib.parse.urlsplit(pool.url)
    head = "POST %s HTTP/%s\r\nHost: %s\r\n" % (path, version, u.hostname)
    if length:
        head += "Content-Length: %d\r\n" % (length if length is not True else len(body))
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(head.encode() + b"\r\n" + (body if send_body else b""))
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536) or b"\r\n\r\n"
        top, rest = data.split(b"\r\n\r\n", 1)
        n = int([h for h in top.split(b"\r\n") if h.startswith(b"content-length:")][0][15:])
        while len(rest) < n:
            chunk = s.recv(65536)
            assert chunk, (top, rest)
            rest += chunk
    return top + b"\r\n\r\n", rest


def xml_call(method, *params):
    """A methodCall in the compact form, params given as already-written <value>s."""
    return (
        "<methodCall><methodName>%s</methodName><params>%s</params></methodCall>"
        % (method, "".join("<param>%s</param>" % p for p in params))
    ).encode()


def ok_xml(value):
    return (
        '<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>'
        "Status</name><value>Success</value></member><member><name>Value</name>%s</member>"
        "</struct></value></param></params></methodResponse>" % value
    ).encode()


def failed_xml(*desc):
    return (
        '<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>'
        "Status</name><value>Failure</value></member><member><name>ErrorDescription</name>"
        "<value><array><data>%s</data></array></value></member></struct></value></param>"
        "</params></methodResponse>" % "".join("<value>%s</value>" % d for d in desc)
    ).encode()


def v(s):
    return "<value>%s</value>" % s


def test_xml_rpc_response_bytes_for_each_type(pool):
    s = pool.session()._session
    vm = pool.session().xenapi.VM.get_by_name_label("vm-1")[0]

    def answer(method, *params):
        return http(pool, xml_call(method, v(s), *params))[1]

    head, body = http(pool, xml_call("session.get_this_host", v(s), v(s)))
    assert body == ok_xml(v(pool.host(0).ref))  # a string: bare text, no <string>
    assert (
        head
        == (
            "HTTP/1.1 200 OK\r\ncontent-length: %d\r\n" % len(body) + OK_HEADERS % "text/xml"
        ).encode()
    )
    assert answer("VM.set_name_description", v(vm), v("")) == ok_xml("<value></value>")  # void
    assert answer("VM.get_name_description", v(vm)) == ok_xml("<value></value>")
    assert answer("VM.get_is_a_template", v(vm)) == ok_xml("<value><boolean>0</boolean></value>")
    # An int goes out untyped (ocaml-rpc ~strict:false), whatever form it came in.
    assert answer("VM.set_user_version", v(vm), "<value><i4>7</i4></value>") == ok_xml(v(""))
    assert answer("VM.get_user_version", v(vm)) == ok_xml(v("7"))
    assert answer("VM.get_HVM_shadow_multiplier", v(vm)) == ok_xml(
        "<value><double>1</double></value>"
    )  # "%.16g"
    assert answer("VM.get_snapshot_time", v(vm)) == ok_xml(
        "<value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value>"
    )
    assert answer("VM.set_other_config", v(vm), "<value><struct></struct></value>") == ok_xml(v(""))
    assert answer("VM.get_other_config", v(vm)) == ok_xml("<value><struct></struct></value>")
    answer("VM.add_to_other_config", v(vm), v("k"), v("a&amp;b&lt;&quot;'&gt;"))
    assert answer("VM.get_other_config", v(vm)) == ok_xml(
        "<value><struct><member><name>k</name><value>a&amp;b&lt;&quot;'&gt;</value></member>"
        "</struct></value>"
    )
    assert answer("pool.get_all") == ok_xml(
        "<value><array><data>%s</data></array></value>" % v(pool.session().xenapi.pool.get_all()[0])
    )
    assert answer("VM.get_VBDs", v("OpaqueRef:NULL")) == failed_xml(
        "HANDLE_INVALID", "VM", "OpaqueRef:NULL"
    )
    assert http(pool, xml_call("pool.get_all", v("OpaqueRef:x")))[1] == failed_xml(
        "SESSION_INVALID", "OpaqueRef:x"
    )


def test_xml_rpc_request_forms_xapi_reads(pool):
    s = pool.session()._session
    vm = pool.session().xenapi.VM.get_by_name_label("vm-1")[0]
    # <string> or bare text, an XML declaration or none, blank layout between elements
    for param in (
        "<value><string>%s</string></value>" % s,
        "<value>\n <string>%s</string>\n</value>" % s,
        v(s),
    ):
        body = b'<?xml version="1.0"?>\n' + xml_call("session.get_this_host", param, param).replace(
            b"<params>", b"<params>\n  "
        )
        assert http(pool, body)[1] == ok_xml(v(pool.host(0).ref))
    # int, i4 and i8 all read as Int64.of_string does (hex and '_' included)
    for form, seen in (("<int>5</int>", "5"), ("<i8>0x10</i8>", "16"), ("<i4>1_000</i4>", "1000")):
        http(pool, xml_call("VM.set_user_version", v(s), v(vm), "<value>%s</value>" % form))
        assert http(pool, xml_call("VM.get_user_version", v(s), v(vm)))[1] == ok_xml(v(seen))
    # a boolean is true only as "1"
    http(
        pool,
        xml_call("VM.set_is_a_template", v(s), v(vm), "<value><boolean>true</boolean></value>"),
    )
    assert http(pool, xml_call("VM.get_is_a_template", v(s), v(vm)))[1] == ok_xml(
        "<value><boolean>0</boolean></value>"
    )
    # control characters are dropped on the way out (JSON-RPC can carry them in)
    http(
        pool,
        b'{"method":"VM.set_name_description","params":["%s","%s","a\\u0001b\\tc"],'
        b'"id":1}' % (s.encode(), vm.encode()),
        path="/jsonrpc",
    )
    assert http(pool, xml_call("VM.get_name_description", v(s), v(vm)))[1] == ok_xml(v("ab\tc"))


@pytest.mark.parametrize(
    "body",
    [
        b"<not-xml",
        b"<methodCall><methodName>pool.get_all</methodName></methodCall>",  # <params> is required
        xml_call("pool.get_all", "<value><int> 1</int></value>"),  # Int64.of_string takes no blanks
        xml_call("pool.get_all", "<value><boolean/></value>"),
        xml_call(
            "pool.get_all",
            "<value><struct><member><name></name><value>x</value></member></struct></value>",
        ),
        xml_call("pool.get_all", "<value><i2>1</i2></value>"),
    ],
)
def test_xml_rpc_parse_failure_is_http_500_before_dispatch(pool, body):
    head, page = http(pool, body)
    assert head.startswith(b"HTTP/1.1 500 Internal Error\r\ncontent-length: ")
    assert head.endswith(
        b"\r\ncontent-type: text/html\r\nconnection: close\r\n"
        b"cache-control: no-cache, no-store\r\n\r\n"
    )
    assert page.startswith(b"<html><body><h1>HTTP 500 internal server error</h1>")


def json_body(method, params, call_id=1, v2=False):
    doc = {"method": method, "params": params, "id": call_id}
    if v2:
        doc["jsonrpc"] = "2.0"
    return json.dumps(doc).encode()


def test_json_rpc_v1_and_v2_results_and_errors(pool):
    s = pool.session()._session
    vm = pool.session().xenapi.VM.get_by_name_label("vm-1")[0]
    ref = pool.host(0).ref
    head, body = http(pool, json_body("session.get_this_host", [s, s]), path="/jsonrpc")
    assert body == b'{"result":"%s","error":null,"id":1}' % ref.encode()
    assert (
        head
        == (
            "HTTP/1.1 200 OK\r\ncontent-length: %d\r\n" % len(body)
            + OK_HEADERS % "application/json"
        ).encode()
    )
    assert (
        http(pool, json_body("session.get_this_host", [s, s], "x", v2=True), path="/jsonrpc")[1]
        == b'{"jsonrpc":"2.0","result":"%s","id":"x"}' % ref.encode()
    )
    # failures: v1 puts the description in "error"; v2 an error object, code 1
    assert (
        http(pool, json_body("pool.get_all", ["OpaqueRef:x"], 7), path="/jsonrpc")[1]
        == b'{"result":null,"error":["SESSION_INVALID","OpaqueRef:x"],"id":7}'
    )
    assert http(pool, json_body("pool.get_all", ["OpaqueRef:x"], 7, v2=True), path="/jsonrpc")[
        1
    ] == (
        b'{"jsonrpc":"2.0","error":{"code":1,"message":'
        b'"SESSION_INVALID","data":["OpaqueRef:x"]},"id":7}'
    )
    # types: ints are numbers here, floats keep a period, void is ""
    assert (
        http(pool, json_body("VM.set_user_version", [s, vm, 12]), path="/jsonrpc")[1]
        == b'{"result":"","error":null,"id":1}'
    )
    for msg, out in (
        ("get_user_version", b"12"),
        ("get_is_a_template", b"false"),
        ("get_HVM_shadow_multiplier", b"1.0"),
        ("get_snapshot_time", b'"19700101T00:00:00Z"'),
    ):
        assert (
            http(pool, json_body("VM." + msg, [s, vm]), path="/jsonrpc")[1]
            == b'{"result":%s,"error":null,"id":1}' % out
        )
    rec = json.loads(http(pool, json_body("VM.get_record", [s, vm]), path="/jsonrpc")[1])
    assert rec["result"]["user_version"] == 12 and isinstance(rec["result"]["VCPUs_max"], int)
    # the XML-RPC side of the same value stays bare text
    assert http(pool, xml_call("VM.get_user_version", v(s), v(vm)))[1] == ok_xml(v("12"))
    # /json (not /jsonrpc) is an XML-RPC endpoint in xapi.ml
    assert http(pool, xml_call("session.get_this_host", v(s), v(s)), path="/json")[1] == ok_xml(
        v(ref)
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"method":"pool.get_all","params":[]}',  # no id: a notification, refused
        b'{"method":"pool.get_all","params":[],"id":null}',
        b'{"method":"pool.get_all","params":[],"id":1.5}',
        b'{"method":"pool.get_all","id":1}',  # v1 needs params
        b'{"jsonrpc":"2.1","method":"pool.get_all","params":[],"id":1}',
        b'{"params":[],"id":1}',
        b'["pool.get_all"]',
        b'{"method":',
    ],
)
def test_json_rpc_malformed_is_http_500(pool, body):
    head, page = http(pool, body, path="/jsonrpc")
    assert head.startswith(b"HTTP/1.1 500 Internal Error\r\n")
    assert b"content-type: text/html\r\n" in head


def test_json_rpc_v2_params_may_be_absent(pool):
    # jsonrpc.ml: a v2 call without params has none; it is dispatched, not refused.
    out = http(pool, b'{"jsonrpc":"2.0","method":"pool.get_all","id":3}', path="/jsonrpc")[1]
    assert out.startswith(b'{"jsonrpc":"2.0","error":{"code":1,"message":"')
    assert out.endswith(b',"id":3}')


@pytest.mark.parametrize("path", ["/", "/jsonrpc"])
def test_body_over_300_kib_is_refused_before_it_is_read(pool, path):
    # http_svr.ml read_body: Content-Length > limit raises before reading the body.
    head, page = http(pool, b"", path=path, length=MAX_RPC_SIZE + 1, send_body=False)
    assert (
        head
        == (
            "HTTP/1.1 500 Internal Error\r\ncontent-length: %d\r\ncontent-type: text/html"
            "\r\nconnection: close\r\ncache-control: no-cache, no-store\r\n\r\n" % len(page)
        ).encode()
    )
    assert page == (
        b"<html><body><h1>HTTP 500 internal server error</h1>An unexpected error "
        b"occurred; please wait a while and try again. If the problem persists, please"
        b" contact your support representative.<h1> Additional information </h1>"
        b"Http_svr.Client_requested_size_over_limit</body></html>"
    )


def test_body_of_exactly_300_kib_is_dispatched(pool):
    s = pool.session()._session
    call = xml_call("session.get_this_host", v(s), v(s))
    body = call.replace(b"<params>", b"<params>" + b" " * (MAX_RPC_SIZE - len(call)))
    assert len(body) == MAX_RPC_SIZE
    assert http(pool, body)[1] == ok_xml(v(pool.host(0).ref))
    call = json_body("session.get_this_host", [s, s])
    body = call + b" " * (MAX_RPC_SIZE - len(call))
    assert http(pool, body, path="/jsonrpc")[1].startswith(b'{"result":"OpaqueRef:')


def test_http_framing_of_requests(pool):
    s = pool.session()._session
    # no Content-Length: read_body fails, HTTP 500
    head, page = http(pool, xml_call("pool.get_all", v(s)), length=False, send_body=False)
    assert head.startswith(b"HTTP/1.1 500 Internal Error\r\n")
    assert b"We require a content-length: HTTP header" in page
    # HTTP/1.0 is answered in 1.0 and the connection closes
    head, _ = http(pool, xml_call("pool.get_all", v(s)), version="1.0")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and b"\r\nconnection: close\r\n" in head


def test_plugin_argv_is_written_as_xml_light_writes_it(pool, xapi):
    from test_sim_plugins import PLUGIN, install

    install(pool, "probe", PLUGIN)
    xapi.host.call_plugin(pool.host(0).ref, "probe", "echo", {})
    # JSON-RPC carries a control character that XML cannot
    s = pool.session()._session
    out = http(
        pool,
        json_body(
            "host.call_plugin", [s, pool.host(0).ref, "probe", "echo", {"q": 'a"b\x01', "e": ""}]
        ),
        path="/jsonrpc",
    )
    assert out[1].startswith(b'{"result":"{')
    first, second = [e["argv"][1] for e in pool.admin.plugin_argv()[-2:]]
    session = first.split("<param><value>")[1].split("</value>")[0]
    assert first == (
        "<methodCall><methodName>echo</methodName><params><param><value>%s</value>"
        "</param><param><value><struct/></value></param></params></methodCall>" % session
    )
    assert second.endswith(
        "<struct><member><name>q</name><value>a&quot;b</value></member>"
        "<member><name>e</name><value/></member></struct></value></param>"
        "</params></methodCall>"
    )


def test_a_burst_of_connections_is_queued_not_reset(pool):
    """xen-api xapi_globs.ml listen_backlog: xapi listens with a backlog of 128, so a burst of
    clients connecting at once waits to be accepted (socketserver's default of 5 reset them)."""
    import threading

    gate, errors, done = threading.Event(), [], []

    def login():
        gate.wait()
        try:
            s = XenAPI.Session(pool.url)
            s.login_with_password(pool.info["user"], pool.info["password"], "2.21", "burst")
            s.xenapi.session.logout()
            done.append(1)
        except Exception as e:  # every failure is reported below
            errors.append(e)

    threads = [threading.Thread(target=login) for _ in range(120)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert errors == [] and len(done) == 120
