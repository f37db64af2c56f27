"""The API wire as xapi reads and writes it, byte for byte.

XML-RPC and JSON-RPC follow ocaml-rpc (mirage/ocaml-rpc src/lib/xmlrpc.ml, src/lib/jsonrpc.ml) as
xen-api ocaml/xapi/api_server.ml `callback`/`jsoncallback` use them; HTTP framing follows xen-api
ocaml/libs/http-lib/http_svr.ml and http.ml; the plugin argv follows ocaml/libs/xml-light2/xml.ml.

Python values map to ocaml-rpc's Rpc.t: str -> String, bool -> Bool, int -> Int (int64),
float -> Float, xmlrpc.client.DateTime -> DateTime, dict -> Dict, list/tuple -> Enum. xapi never
writes Null for an API value, so None (a simulator bug) raises TypeError, as does anything else.
"""

import base64
import binascii
import json
import re
import xml.parsers.expat
import xmlrpc.client
from typing import Any, Callable, Dict, List, Optional, Tuple

# xen-api ocaml/xapi-consts/constants.ml (XML-RPC) and ocaml/database/db_globs.ml (JSON-RPC)
# http_limit_max_rpc_size; http_svr.ml read_body refuses `length > limit`.
MAX_RPC_SIZE = 300 * 1024

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class Int32(int):
    """ocaml-rpc's Rpc.Int32 (event.from's valid_ref_counts): <i4> in XML-RPC, a number in JSON."""


class RequestError(Exception):
    """A request xapi refuses before dispatch: HTTP 500 with the OCaml exception's text."""


# ------------------------------------------------------------------ XML-RPC writer
_XML_ESCAPES: Dict[int, Optional[str]] = dict(
    (c, None) for c in range(0x20) if chr(c) not in "\t\n\r"
)
_XML_ESCAPES.update({ord(">"): "&gt;", ord("<"): "&lt;", ord("&"): "&amp;", ord('"'): "&quot;"})


def _xml_text(s):
    # ocaml-rpc xmlrpc.ml encode_buf: > < & " escaped; TAB, LF, CR and 0x20..0xff kept;
    # other control characters dropped.
    return s.translate(_XML_ESCAPES)


def _int64(v):
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise OverflowError("int exceeds int64 range: %d" % v)
    return "%d" % v


def _xml_add(v, out, strict):
    # ocaml-rpc xmlrpc.ml add_value; xapi writes with ~strict:false
    if isinstance(v, str):
        out.append("<value>%s</value>" % _xml_text(v))
    elif isinstance(v, bool):
        out.append("<value><boolean>%s</boolean></value>" % ("1" if v else "0"))
    elif isinstance(v, Int32):
        out.append("<value><i4>%d</i4></value>" % v)
    elif isinstance(v, int):
        # Not strict, an Int is bare text: API ints reach clients as strings.
        out.append(("<value><i8>%s</i8></value>" if strict else "<value>%s</value>") % _int64(v))
    elif isinstance(v, float):
        # "%.16g", no shortest-round-trip fallback (loses the last digit at times).
        out.append("<value><double>%.16g</double></value>" % v)
    elif isinstance(v, xmlrpc.client.DateTime):
        out.append("<value><dateTime.iso8601>%s</dateTime.iso8601></value>" % v.value)
    elif isinstance(v, dict):
        out.append("<value><struct>")
        for k, item in v.items():
            if not isinstance(k, str):
                raise TypeError("struct key %r is not a string" % (k,))
            # Member names are written unescaped (add_member uses Buffer.add_string).
            out.append("<member><name>%s</name>" % k)
            _xml_add(item, out, strict)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(v, (list, tuple)):
        out.append("<value><array><data>")
        for item in v:
            _xml_add(item, out, strict)
        out.append("</data></array></value>")
    else:
        raise TypeError("cannot marshal %s" % type(v).__name__)


def to_xml(value, strict=False):
    """ocaml-rpc Xmlrpc.to_string: one <value> (also what xapi stores as an Async task.result)."""
    out: List[str] = []
    _xml_add(value, out, strict)
    return "".join(out)


def xml_response(success, contents, strict=False):
    """ocaml-rpc Xmlrpc.string_of_response: the Status/Value|ErrorDescription struct."""
    v = (
        {"Status": "Success", "Value": contents}
        if success
        else {"Status": "Failure", "ErrorDescription": contents}
    )
    return (
        '<?xml version="1.0"?><methodResponse><params><param>%s</param></params>'
        "</methodResponse>" % to_xml(v, strict)
    ).encode("utf-8")


def xml_bare_response(value):
    """api_server.ml callback for system.listMethods: the value alone in the param."""
    return (
        '<?xml version="1.0"?><methodResponse><params><param>%s</param></params>'
        "</methodResponse>" % to_xml(value)
    ).encode("utf-8")


# ------------------------------------------------------------------ XML-RPC reader
class _Events:
    """The Xmlm signal stream call_of_string walks: start tag, end tag, one data run between.

    Xmlm reads lazily, so anything after the root element's end is never looked at; comments
    and processing instructions produce no signal."""

    def __init__(self, body):
        self.events: List[Tuple[str, Any]] = []
        self.i = 0
        depth = [0]
        done = [False]

        def start(name, _attrs):
            depth[0] += 1
            self.events.append(("start", name))

        def end(_name):
            depth[0] -= 1
            self.events.append(("end", None))
            done[0] = depth[0] == 0

        def data(text):
            if self.events and self.events[-1][0] == "data":
                self.events[-1] = ("data", self.events[-1][1] + text)
            else:
                self.events.append(("data", text))

        def entity(*_args):
            # Xmlm knows only the predefined entities; be stricter than expat's expansion.
            raise RequestError("Xmlm.Error(_, _)")

        p = xml.parsers.expat.ParserCreate()
        p.StartElementHandler, p.EndElementHandler = start, end
        p.CharacterDataHandler, p.EntityDeclHandler = data, entity
        try:
            p.Parse(body, True)
        except xml.parsers.expat.ExpatError:
            if not done[0]:
                raise RequestError("Xmlm.Error(_, _)") from None

    def peek(self):
        return self.events[self.i] if self.i < len(self.events) else ("eoi", None)

    def input(self):
        ev = self.peek()
        if ev[0] == "eoi":
            raise RequestError("Xmlm.Error(_, `Unexpected_eoi)")
        self.i += 1
        return ev


def _is_empty(s):
    # xmlrpc.ml Parser.is_empty: only space, LF and TAB count as blank.
    return all(c in " \n\t" for c in s)


def _parse_error(got, expected):
    return RequestError('Xmlrpc.Parse_error("%s", "%s", _)' % (got, expected))


def _show(ev):
    kind, x = ev
    return {"start": "open_tag(%s)" % x, "end": "close_tag", "data": "data(%s)" % x, "eoi": "eoi"}[
        kind
    ]


class _XmlParser:
    """ocaml-rpc xmlrpc.ml Parser, step for step, over _Events."""

    def __init__(self, body):
        self.ev = _Events(body)

    def open_tag(self):
        while True:
            ev = self.ev.input()
            if ev[0] == "start":
                return ev[1]
            if ev[0] == "data" and _is_empty(ev[1]):
                continue
            raise _parse_error(_show(ev), "open_tag")

    def close_tag(self, tag):
        while True:
            ev = self.ev.input()
            if ev[0] == "end":
                return
            if ev[0] == "data" and _is_empty(ev[1]):
                continue
            raise _parse_error(_show(ev), "close_tag(%s)" % tag)

    def skip_empty(self):
        while self.ev.peek()[0] == "data" and _is_empty(self.ev.peek()[1]):
            self.ev.input()

    def get_data(self):
        ev = self.ev.input()
        if ev[0] == "data":
            return ev[1]
        if ev[0] == "end":
            return ""  # the next close_tag then consumes the parent's end: a parse error
        raise _parse_error(_show(ev), "data")

    def map_tag(self, tag, f):
        t = self.open_tag()
        if t != tag:
            raise _parse_error("open_tag(%s)" % t, "open_tag(%s)" % tag)
        r = f()
        self.close_tag(tag)
        return r

    def value(self):
        t = self.open_tag()
        if t != "value":
            raise _parse_error("open_tag(value)", "open_tag(%s)" % t)
        kind, d = self.ev.peek()
        if kind == "end":
            r = ""
        elif kind == "data":
            self.ev.input()
            # Bare text is a string; blank text before a tag is layout.
            r = self.typed() if _is_empty(d) and self.ev.peek()[0] == "start" else d
        else:
            r = self.typed()
        self.close_tag("value")
        return r

    _EMPTY: Dict[str, Callable[[], Any]] = {
        "string": lambda: "",
        "array": list,
        "struct": dict,
        "nil": lambda: None,
        "value": lambda: "",
    }

    def typed(self):
        tag = self.open_tag()
        if self.ev.peek()[0] == "end":
            if tag not in self._EMPTY:
                raise _parse_error("empty_%s" % tag, tag)
            r = self._EMPTY[tag]()
        else:
            r = self.basic(tag)
        self.close_tag(tag)
        return r

    def basic(self, tag):
        if tag in ("int", "i8", "i4"):
            return ocaml_int64(self.get_data())
        if tag == "boolean":
            return self.get_data() == "1"  # anything but "1" is false
        if tag == "double":
            return _ocaml_float(self.get_data())
        if tag == "string":
            return self.get_data()
        if tag == "dateTime.iso8601":
            return xmlrpc.client.DateTime(self.get_data())
        if tag == "base64":
            try:
                return xmlrpc.client.Binary(base64.b64decode(self.get_data(), validate=True))
            except (binascii.Error, ValueError):
                raise RequestError('Invalid_argument("Base64.decode_exn")') from None
        if tag == "array":
            return self.map_tag("data", self.values)
        if tag == "struct":
            return self.members()
        if tag == "nil":
            return None
        raise _parse_error(
            "open_tag(%s)" % tag,
            "open_tag(int/i8/i4/boolean/double/string/dateTime.iso8601/array/struct/nil)",
        )

    def values(self):
        r = []
        self.skip_empty()
        while self.ev.peek()[0] != "end":
            r.append(self.value())
            self.skip_empty()
        return r

    def members(self):
        r: Dict[str, Any] = {}
        self.skip_empty()
        while self.ev.peek()[0] != "end":
            name, v = self.map_tag(
                "member", lambda: (self.map_tag("name", self.get_data), self.value())
            )
            r.setdefault(name, v)  # the generated unmarshallers use List.assoc: first wins
            self.skip_empty()
        return r

    def call(self):
        def params():
            r = []
            self.skip_empty()
            while self.ev.peek()[0] != "end":
                r.append(self.map_tag("param", self.value))
                self.skip_empty()
            return r

        def body():
            name = self.map_tag("methodName", self.get_data)
            return name, self.map_tag("params", params)

        return self.map_tag("methodCall", body)


def ocaml_int64(s):
    # OCaml Int64.of_string (runtime/ints.c parse_intnat): optional sign, 0x/0o/0b/0u prefix
    # (those read unsigned 64-bit, two's complement), '_' after the first digit, no blanks.
    m = re.fullmatch(r"([-+]?)(0[xXoObBuU])?(.*)", s, re.S)
    assert m  # every string matches
    sign, prefix, digits = m.groups()
    base = {"x": 16, "o": 8, "b": 2, "u": 10}.get((prefix or "  ")[1].lower(), 10)
    alphabet = "0123456789abcdef"[:base]
    ok = (
        digits[:1].lower() in alphabet
        and digits[:1] != ""
        and all(c == "_" or c.lower() in alphabet for c in digits)
    )
    if ok:
        n = int(digits.replace("_", ""), base)
        if prefix:
            ok = n < (1 << 64)
            n = n - (1 << 64) if n > _INT64_MAX else n
        else:
            ok = n <= (-_INT64_MIN if sign == "-" else _INT64_MAX)
        if ok:
            return -n if sign == "-" else n
    raise RequestError('Failure("Int64.of_string")')


def _ocaml_float(s):
    # OCaml float_of_string: '_' removed, then strtod, which skips leading blanks only.
    t = s.replace("_", "")
    if t and not t[-1].isspace():
        for conv in (float, float.fromhex):
            try:
                return conv(t)
            except ValueError:
                pass
    raise RequestError('Failure("float_of_string")')


def xml_call(body):
    """ocaml-rpc Xmlrpc.call_of_string: (method name, params) or RequestError."""
    return _XmlParser(body).call()


# ------------------------------------------------------------------ JSON-RPC
V1, V2 = "1.0", "2.0"


# Yojson write_string: " \ BS FF LF CR TAB escaped, other 0x00-0x1f and 0x7f as \u00xx
# (lower-case hex), everything else (UTF-8 included) as is.
_JSON_ESCAPES = dict((c, "\\u%04x" % c) for c in list(range(0x20)) + [0x7F])
_JSON_ESCAPES.update(
    {ord('"'): '\\"', ord("\\"): "\\\\", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t"}
)


def _json_text(s):
    return '"%s"' % s.translate(_JSON_ESCAPES)


def _json_float(x):
    # Yojson write_float (Yojson.Safe.to_string, non-standard: NaN/Infinity allowed).
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    s = "%.16g" % x
    if float(s) != x:
        s = "%.17g" % x
    return s + ".0" if all(c in "0123456789-" for c in s) else s


def _json_add(v, out):
    # ocaml-rpc jsonrpc.ml rpc_to_json, written compact by Yojson.Safe.to_string.
    if isinstance(v, str):
        out.append(_json_text(v))
    elif isinstance(v, bool):
        out.append("true" if v else "false")
    elif isinstance(v, int):
        out.append(_int64(v))
    elif isinstance(v, float):
        out.append(_json_float(v))
    elif isinstance(v, xmlrpc.client.DateTime):
        out.append(_json_text(v.value))
    elif isinstance(v, dict):
        out.append("{")
        for n, (k, item) in enumerate(v.items()):
            if not isinstance(k, str):
                raise TypeError("object key %r is not a string" % (k,))
            out.append("%s%s:" % ("," if n else "", _json_text(k)))
            _json_add(item, out)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for n, item in enumerate(v):
            if n:
                out.append(",")
            _json_add(item, out)
        out.append("]")
    else:
        raise TypeError("cannot marshal %s" % type(v).__name__)


def to_json(value):
    out: List[str] = []
    _json_add(value, out)
    return "".join(out)


def json_response(success, contents, version, call_id):
    """ocaml-rpc Jsonrpc.string_of_response ~id ~version, after api_server.ml callback1 turns a
    v2 failure [code; params...] into {code: 1, message: code, data: [params...]}."""
    rid = to_json(call_id)
    if version == V2:
        if success:
            text = '{"jsonrpc":"2.0","result":%s,"id":%s}' % (to_json(contents), rid)
        else:
            # api_server_common.ml error_code_lit = 1L
            err = {"code": 1, "message": contents[0], "data": list(contents[1:])}
            text = '{"jsonrpc":"2.0","error":%s,"id":%s}' % (to_json(err), rid)
    elif success:
        text = '{"result":%s,"error":null,"id":%s}' % (to_json(contents), rid)
    else:
        text = '{"result":null,"error":%s,"id":%s}' % (to_json(contents), rid)
    return text.encode("utf-8")


def _malformed(message):
    return RequestError('Jsonrpc.Malformed_method_request("%s")' % message)


class _Object(list):
    """A JSON object as its (key, value) pairs in order."""


def _from_json(v):
    # jsonrpc.ml json_to_rpc: an int beyond the native int is an Intlit read by Int64.of_string.
    if isinstance(v, _Object):
        d: Dict[str, Any] = {}
        for k, x in v:
            d.setdefault(k, _from_json(x))  # the generated unmarshallers' List.assoc: first wins
        return d
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool) and not _INT64_MIN <= v <= _INT64_MAX:
        raise RequestError('Failure("Int64.of_string")')
    return v


def json_call(body):
    """ocaml-rpc Jsonrpc.version_id_and_call_of_string: (version, id, method, params)."""
    try:
        doc = json.loads(body, object_pairs_hook=_Object)
    except ValueError as e:
        raise RequestError('Yojson.Json_error("%s")' % e) from None
    doc = _from_json(doc)
    if not isinstance(doc, dict):
        raise _malformed("Invalid request body")
    if "method" not in doc:
        raise _malformed("Required field method is missing")
    if not isinstance(doc["method"], str):
        raise _malformed("Invalid field 'method' in request body")
    if "jsonrpc" not in doc:
        version = V1
    elif doc["jsonrpc"] == "2.0":
        version = V2
    else:
        raise _malformed("Invalid field 'jsonrpc' in request body")
    params = doc.get("params")
    if version == V1 and "params" not in doc:
        raise _malformed("Required field params is missing")
    if isinstance(params, dict) and version == V2:  # by-name params: one struct
        params = [params]
    elif params is None and version == V2:
        params = []
    elif not isinstance(params, list):
        raise _malformed("Invalid field 'params' in request body")
    call_id = doc.get("id")
    # Only int and string ids; a missing or null id (a notification) is refused.
    if isinstance(call_id, bool) or not isinstance(call_id, (int, str)):
        raise _malformed("Invalid field 'id' in request body")
    return version, call_id, doc["method"], params


# ------------------------------------------------------------------ HTTP
def http_response(version, status, headers, body):
    """http.ml Response.to_wire_string: status line, content-length first, then the headers."""
    lines = ["HTTP/%s %s" % (version, status), "content-length: %d" % len(body)]
    lines += ["%s: %s" % kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def escape_html(s):
    # http_svr.ml escape_html
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("'", "&apos;"), ('"', "&quot;")):
        s = s.replace(a, b)
    return s


def internal_error_body(extra):
    """http_svr.ml response_internal_error: the HTML body of an HTTP 500."""
    return (
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; "
        "please wait a while and try again. If the problem persists, please contact your "
        "support representative.<h1> Additional information </h1>%s</body></html>"
        % escape_html(extra)
    ).encode("utf-8")


# ------------------------------------------------------------------ plugin argv
def _light(tag, *children):
    # xml-light2 xml.ml to_fct: an element without children is written <tag/>; a PCData child,
    # even empty, is a child.
    return "<%s>%s</%s>" % (tag, "".join(children), tag) if children else "<%s/>" % tag


def plugin_call(fn, session, args):
    """The argv[1] of a plugin: xen-api ocaml/xapi/xapi_plugins.ml call_plugin builds it with
    XMLRPC.To (ocaml/libs/http-lib/xMLRPC.ml: To.string "" is an empty <value>) and writes it
    with Xml.to_string, whose esc_pcdata escapes as ocaml-rpc does."""

    def string(s):
        return _light("value", _xml_text(s)) if s else _light("value")

    members = [_light("member", _light("name", _xml_text(k)), string(v)) for k, v in args.items()]
    return _light(
        "methodCall",
        _light("methodName", _xml_text(fn)),
        _light(
            "params",
            _light("param", string(session)),
            _light("param", _light("value", _light("struct", *members))),
        ),
    )
