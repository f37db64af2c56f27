"""xapi's filter language for <class>.get_all_records_where / get_all_where.

xen-api ocaml/database/db_filter_lex.mll, db_filter_parse.mly, db_filter.ml and
db_cache_impl.ml find_refs_with_filter_internal: `field "name_label" = "x"`, `"a" = "b"`,
`true`, `false`, `not`, `and`, `or`, parentheses; fields compare as their database strings.
"""

import re

from .errors import XapiError

_TOKEN = re.compile(r'[ \t\n]+|=|\(|\)|true|false|field|and|or|not|"[^"]*"')

# Printexc.to_string of the exceptions xapi's lexer and menhir parser raise; xapi answers
# INVALID_VALUE [expr; that text] (ocaml/xapi/exnHelper.ml Db_filter.Expression_error).
LEX_ERROR = 'Failure("lexing: empty token")'
PARSE_ERROR = "Xapi_database__Db_filter_parse.MenhirBasics.Error"


class _Invalid(Exception):
    pass


def _tokens(text):
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise _Invalid(LEX_ERROR)
        tok = m.group(0)
        pos = m.end()
        if tok[0] in " \t\n":
            continue
        out.append(("IDENT", tok[1:-1]) if tok[0] == '"' else (tok, None))
    out.append(("EOF", None))
    return out


class _Parser:
    """Precedence as the .mly declares it: `%right LNOT` below `%left LAND LOR`, so
    `not` takes everything to its right and `and`/`or` bind equally, left to right."""

    def __init__(self, tokens):
        self.toks = tokens
        self.i = 0

    def peek(self):
        return self.toks[self.i][0]

    def take(self, kind=None):
        tok = self.toks[self.i]
        if kind is not None and tok[0] != kind:
            raise _Invalid(PARSE_ERROR)
        self.i += 1
        return tok

    def sequence(self):
        left = self.unary()
        while self.peek() in ("and", "or"):
            op = self.take()[0]
            left = (op, left, self.unary())
        return left

    def unary(self):
        kind = self.peek()
        if kind == "not":
            self.take()
            return ("not", self.sequence())
        if kind in ("true", "false"):
            self.take()
            return (kind,)
        if kind == "(":
            self.take()
            inner = self.sequence()
            self.take(")")
            return inner
        left = self.value()
        self.take("=")
        return ("eq", left, self.value())

    def value(self):
        if self.peek() == "field":
            self.take()
            return ("field", self.take("IDENT")[1])
        return ("literal", self.take("IDENT")[1])


def parse(text):
    try:
        p = _Parser(_tokens(text))
        tree = p.sequence()
        p.take("EOF")
        return tree
    except _Invalid as e:
        raise XapiError("INVALID_VALUE", text, str(e)) from None


def compile_expr(text):
    """A predicate over `lookup(field_name) -> database string`."""
    tree = parse(text)

    def ev(node, lookup):
        op = node[0]
        if op == "true":
            return True
        if op == "false":
            return False
        if op == "not":
            return not ev(node[1], lookup)
        if op == "and":
            return ev(node[1], lookup) and ev(node[2], lookup)
        if op == "or":
            return ev(node[1], lookup) or ev(node[2], lookup)
        a, b = [v[1] if v[0] == "literal" else lookup(v[1]) for v in node[1:]]
        return a == b

    return lambda lookup: ev(tree, lookup)


def missing(name):
    # Row.find raises Not_found for a field the table lacks (db_cache_types.ml).
    raise XapiError("INTERNAL_ERROR", "Not_found")


def _sexpr_string(s):
    # xen-api ocaml/libs/sexpr/sExpr.ml string_of / escape_buf
    return "'%s'" % s.replace("\\", "\\\\").replace("'", "\\'")


def db_string(cls, name, value):
    """How xapi's database holds a field (gen_db_actions.ml dm_to_string,
    string_marshall_helper.ml)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "%0.18g" % value
    if isinstance(value, list):
        return "(%s)" % " ".join(_sexpr_string(str(v)) for v in value)
    if isinstance(value, dict):
        return "(%s)" % " ".join(
            "(%s %s)" % (_sexpr_string(k), _sexpr_string(str(v))) for k, v in value.items()
        )
    if hasattr(value, "value"):  # xmlrpc DateTime: Clock.Date.to_rfc3339, the wire's form
        return value.value
    return str(value)
