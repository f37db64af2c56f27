"""Regenerate simulator/xapisim/data/schema.json from the XAPI datamodel extract.

Run from the repository root:
  python3 tools/gen_xapisim_schema.py ../shared/xapi/datamodel-subset.json \
      simulator/xapisim/data/schema.json ../shared/xapi/xenapi.json
The output keeps only what the simulator needs: field names, wire kinds, qualifiers and defaults,
constructor field lists and message parameter lists. With the whole datamodel (xenapi.json) as a
third argument, the classes and messages in FROM_FULL are added from it.
"""

import json
import re
import sys


def kind_of(t):
    if t.endswith(" set"):
        return "set"
    if t.endswith(" map"):
        return "map"
    if t.endswith(" ref"):
        return "ref:" + t[:-4]
    if t.startswith("enum "):
        return "enum"
    return t


def default_of(kind, raw):
    if kind == "set":
        return []
    if kind == "map":
        if raw and raw != "{}":
            return dict(re.findall(r'"([^"]*)" -> "([^"]*)"', raw))
        return {}
    if kind.startswith("ref:"):
        return "OpaqueRef:NULL"
    if kind == "bool":
        return raw == "true"
    if kind == "int":
        return raw if raw and raw.lstrip("-").isdigit() else "0"
    if kind == "float":
        return float(raw) if raw else 0.0
    if kind == "datetime":
        return raw or "19700101T00:00:00Z"
    if raw is None:
        return ""
    return raw[1:-1] if raw.startswith('"') else raw


# Classes and messages the subset lacks, taken from the full datamodel (xenapi.json).
FROM_FULL = {
    "VM_metrics": None,
    "VM_guest_metrics": None,
    "host_metrics": None,
    "VM": ("create", "destroy", "set_domain_type"),
    "SM": None,
    "host": ("get_servertime",),
}


def _from_full(full, data):
    """xenapi.json entries in the subset's shape."""
    by_name = dict((c["name"], c) for c in json.load(open(full)))
    for cls, only in FROM_FULL.items():
        spec = by_name[cls]
        messages = dict(
            (m["name"], {"params": m["params"], "result": m["result"][0]})
            for m in spec["messages"]
            if only is None or m["name"] in only
        )
        if only is None:
            data[cls] = {
                "fields": [dict(f, state=f["lifecycle"]["state"]) for f in spec["fields"]],
                "messages": messages,
            }
        else:
            data[cls]["messages"].update(messages)


def main(src, dst, full=None):
    data = json.load(open(src))["classes"]
    if full:
        _from_full(full, data)
    out = {}
    for cls, spec in data.items():
        fields = []
        for f in spec["fields"]:
            if f.get("state", "").startswith("Removed"):
                continue
            k = kind_of(f["type"])
            fields.append([f["name"], k, f["qualifier"], default_of(k, f.get("default"))])
        messages = {}
        for name, m in spec["messages"].items():
            messages[name] = {
                "params": [
                    [p["name"], p["type"], p["required"]]
                    for p in m["params"]
                    if p["name"] != "session_id"
                ],
                "session": any(p["name"] == "session_id" for p in m["params"]),
                "result": m["result"],
            }
        out[cls] = {
            "fields": fields,
            "messages": messages,
            "constructor": spec.get("constructor_fields"),
        }
    with open(dst, "w") as fh:
        json.dump(out, fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    main(
        sys.argv[1],
        sys.argv[2] if len(sys.argv) > 2 else "simulator/xapisim/data/schema.json",
        sys.argv[3] if len(sys.argv) > 3 else None,
    )
