"""Operator tuning from /etc/xenvol/xenvol.conf (JSON), with the defaults below, validated on
load: a syntax error (line and column), an unknown key, a wrong type or a value out of range
is XENVOL_INVALID_CONFIG naming the file, the key and the value, never a silent default.
SCHEMA is the one description: validation, the defaults and the published JSON Schema
(docs/plugin-api.md, checked by a test) all come from it."""

import errno
import json
import re

from . import paths
from .errors import INVALID_CONFIG, XenvolError

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple  # noqa: F401

_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z")
_SR_TYPE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class Setting:
    """One key: its JSON type ("integer", "number", "boolean", "string", or "array" of
    `items`), the bounds of numbers (or of each item), the choices of a string, what each
    string item must be (`form`: "absolute path", "uuid", "sr type", or None)."""

    def __init__(
        self,
        key,
        kind,
        default,
        meaning,
        items=None,
        minimum=None,
        maximum=None,
        max_items=None,
        choices=None,
        form=None,
    ):
        # type: (str, str, Any, str, Optional[str], Any, Any, Optional[int], Any, Optional[str]) -> None
        self.key = key
        self.kind = kind
        self.default = default
        self.meaning = meaning
        self.items = items
        self.minimum = minimum
        self.maximum = maximum
        self.max_items = max_items
        self.choices = choices
        self.form = form

    def problem(self, value):
        # type: (Any) -> Optional[str]
        """What is wrong with a value, or None."""
        if self.kind != "array":
            return self._scalar(self.kind, value)
        if not isinstance(value, list):
            return "must be a list of %ss" % _noun(self.items or "")
        if self.max_items is not None and len(value) > self.max_items:
            return "must have at most %d entries" % self.max_items
        for i, item in enumerate(value):
            wrong = self._scalar(self.items or "", item)
            if wrong:
                return "entry %d %s" % (i, wrong)
        return None

    def _scalar(self, kind, value):
        # type: (str, Any) -> Optional[str]
        if kind == "boolean":
            return None if isinstance(value, bool) else "must be true or false"
        if kind in ("integer", "number"):
            # JSON true is no number (bool is an int to Python).
            ok = isinstance(value, int) if kind == "integer" else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok or value != value:
                return "must be %s from %s to %s" % (
                    "an integer" if kind == "integer" else "a number",
                    self.minimum,
                    self.maximum,
                )
            if value < self.minimum or value > self.maximum:
                return "must be from %s to %s" % (self.minimum, self.maximum)
            return None
        if not isinstance(value, str):
            return "must be a string"
        if self.choices is not None and value not in self.choices:
            return "must be one of %s" % ", ".join(self.choices)
        if self.form == "absolute path" and not value.startswith("/"):
            return "must be an absolute path"
        if self.form == "absolute path or empty" and value and not value.startswith("/"):
            return "must be an absolute path, or empty"
        if self.form == "uuid" and not _UUID.match(value):
            return "must be a uuid"
        if self.form == "sr type" and not _SR_TYPE.match(value):
            return "must be an SR type (letters, digits, _ -)"
        if "\x00" in value or len(value) > 4096:
            return "must be a path or name of at most 4096 characters"
        return None

    def json_schema(self):
        # type: () -> Dict[str, Any]
        out = {"description": self.meaning, "default": self.default}  # type: Dict[str, Any]
        if self.kind == "array":
            out.update(type="array", items=self._item_schema(self.items or ""))
            if self.max_items is not None:
                out["maxItems"] = self.max_items
        else:
            out.update(self._item_schema(self.kind))
        return out

    def _item_schema(self, kind):
        # type: (str) -> Dict[str, Any]
        out = {"type": kind}  # type: Dict[str, Any]
        if kind in ("integer", "number"):
            out.update(minimum=self.minimum, maximum=self.maximum)
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.form == "absolute path":
            out["pattern"] = "^/"
        if self.form == "absolute path or empty":
            out["pattern"] = "^(/.*)?$"
        if self.form == "uuid":
            out["pattern"] = _UUID.pattern.replace("\\Z", "$")
        if self.form == "sr type":
            out["pattern"] = _SR_TYPE.pattern.replace("\\Z", "$")
        return out


def _noun(kind):
    # type: (str) -> str
    return {"number": "number", "string": "string"}.get(kind, kind)


SCHEMA = (
    Setting(
        "lun_rescan_delays",
        "array",
        [1, 2, 4, 8],
        "Seconds to wait before each extra SR.scan while a LUN is not visible yet",
        items="number",
        minimum=0,
        maximum=600,
        max_items=20,
    ),
    Setting(
        "unplug_attempts",
        "integer",
        10,
        "VBD.unplug attempts while the guest refuses (DEVICE_DETACH_REJECTED)",
        minimum=1,
        maximum=1000,
    ),
    Setting(
        "unplug_retry_delay",
        "number",
        1.0,
        "Seconds between those attempts",
        minimum=0,
        maximum=600,
    ),
    Setting(
        "lock_timeout",
        "number",
        120,
        "Seconds one call waits in all for others holding the same SR or VM (clients wait "
        "longer: version's wait_limit)",
        minimum=1,
        maximum=86400,
    ),
    Setting(
        "lease_stale_after",
        "number",
        900,
        "Seconds after which a pool-wide SR lease in no known form is broken (one naming a "
        "dead operation is broken at once)",
        minimum=0,
        maximum=604800,
    ),
    Setting(
        "syslog_socket",
        "string",
        "/dev/log",
        'Log lines also go to this syslog socket when it exists ("" for none)',
        form="absolute path or empty",
    ),
    Setting(
        "allowed_sr_uuids",
        "array",
        [],
        "Existing SRs xenvol did not introduce that a connection_info may name",
        items="string",
        form="uuid",
        max_items=10000,
    ),
    Setting(
        "allowed_sr_types",
        "array",
        [],
        "SM types of such SRs (local types only by uuid or by a type named here)",
        items="string",
        form="sr type",
        max_items=100,
    ),
    Setting(
        "allow_encrypted",
        "boolean",
        False,
        "Attach volumes Cinder marks encrypted as they are (the guest sees LUKS ciphertext)",
    ),
    Setting(
        "file_roots",
        "array",
        ["/var/lib/xenvol/volumes"],
        "The only directories the file driver serves volumes from",
        items="string",
        form="absolute path",
        max_items=100,
    ),
    Setting(
        "placement",
        "string",
        "host",
        "Where a shared SR gets PBDs: host (the VM's host and the master) or pool (every "
        "enabled, live host); a call's placement argument overrides it",
        choices=("host", "pool"),
    ),
    Setting(
        "vdi_name_tags",
        "array",
        ["[NOBAK]", "[NOSNAP]"],
        "Put before a volume's VDI name: Xen Orchestra leaves [NOBAK] disks out of backups "
        "and [NOSNAP] disks out of snapshots",
        items="string",
        max_items=20,
    ),
)
BY_KEY = dict((s.key, s) for s in SCHEMA)
DEFAULTS = dict((s.key, s.default) for s in SCHEMA)


def json_schema():
    # type: () -> Dict[str, Any]
    """The file's JSON Schema (draft 2020-12), as docs/plugin-api.md publishes it."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": paths.CONFIG_FILE,
        "type": "object",
        "additionalProperties": False,
        "properties": dict((s.key, s.json_schema()) for s in SCHEMA),
    }


def wait_limit(settings):
    # type: (Dict[str, Any]) -> int
    """The longest a call can spend waiting (locks, rescans, guest unplug retries), which
    version() reports: a client waits longer than this before it calls an outcome unknown."""
    return int(
        float(settings["lock_timeout"])
        + sum(float(d) for d in settings["lun_rescan_delays"])
        + int(settings["unplug_attempts"]) * float(settings["unplug_retry_delay"])
    )


def _show(value):
    # type: (Any) -> str
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _syntax(text, e):
    # type: (str, ValueError) -> Dict[str, Any]
    line, column = getattr(e, "lineno", 0), getattr(e, "colno", 0)
    msg = getattr(e, "msg", str(e))
    before = text[: getattr(e, "pos", 0)].rstrip()
    if before.endswith(",") and msg.startswith(("Expecting property name", "Expecting value")):
        msg += " (a trailing comma?)"
    return {
        "key": "",
        "line": line,
        "column": column,
        "problem": "not valid JSON: line %d column %d: %s" % (line, column, msg),
    }


def read():
    # type: () -> Tuple[Dict[str, Any], str, List[Dict[str, Any]]]
    """(settings, state, problems) without raising: state "ok", "absent" (the defaults) or
    "invalid"; settings keep the defaults for whatever is invalid (for the log and the wait
    limit a refusal reports; no call works with them)."""
    settings = dict(DEFAULTS)
    path = paths.config_file()
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        if e.errno == errno.ENOENT:
            return settings, "absent", []
        return settings, "invalid", [{"key": "", "problem": "cannot read: %s" % e.strerror}]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return settings, "invalid", [{"key": "", "problem": "not UTF-8 (byte %d)" % e.start}]
    try:
        data = json.loads(text)
    except ValueError as e:
        return settings, "invalid", [_syntax(text, e)]
    if not isinstance(data, dict):
        return settings, "invalid", [{"key": "", "problem": "must be a JSON object {...}"}]
    problems = []
    for key in sorted(data):
        value = data[key]
        setting = BY_KEY.get(key)
        wrong = (
            setting.problem(value)
            if setting
            else "is not a setting (known: %s)" % (", ".join(sorted(BY_KEY)))
        )
        if wrong:
            problems.append({"key": key, "value": value, "problem": wrong})
        else:
            settings[key] = value
    return settings, "invalid" if problems else "ok", problems


def describe(problem):
    # type: (Dict[str, Any]) -> str
    """One problem as a line: `file: key: what (got value)`."""
    text = paths.config_file() + ": "
    if problem["key"]:
        text += problem["key"] + ": "
    text += problem["problem"]
    if "value" in problem:
        text += " (got %s)" % _show(problem["value"])
    return text


def load():
    # type: () -> Dict[str, Any]
    """The settings every working call uses; an invalid file is XENVOL_INVALID_CONFIG."""
    settings, state, problems = read()
    if state == "invalid":
        first = problems[0]
        more = len(problems) - 1
        details = dict((k, first[k]) for k in ("key", "value", "line", "column") if k in first)  # type: Dict[str, Any]
        raise XenvolError(
            INVALID_CONFIG,
            describe(first)
            + (" (and %d more: xe host-call-plugin ... fn=check_config)" % more if more else ""),
            file=paths.config_file(),
            problems=len(problems),
            **details,
        )
    return settings


def state():
    # type: () -> Dict[str, Any]
    """The file's state for version(): {"state", "error"?}."""
    _settings, found, problems = read()
    out = {"state": found}  # type: Dict[str, Any]
    if problems:
        out["error"] = describe(problems[0])
        out["problems"] = len(problems)
    return out
