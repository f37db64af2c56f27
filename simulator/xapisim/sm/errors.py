"""SM backend errors, numbered and worded as in XE_SR_ERRORCODES.xml."""

import os
import xml.etree.ElementTree as ET

from ..errors import XapiError

_TABLE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "XE_SR_ERRORCODES.xml")


def _load():
    codes = {}
    for code in ET.parse(_TABLE).getroot().iter("code"):
        codes[code.findtext("name", "").strip()] = (
            int(code.findtext("value", "")),
            code.findtext("description", "").strip(),
        )
    return codes


CODES = _load()


def sm_error(name, opterr=None, stderr=""):
    """The API error xapi raises for an SM fault: SR_BACKEND_FAILURE_<n> ["", text, stderr]."""
    value, text = CODES[name]
    if opterr:
        text = "%s [opterr=%s]" % (text, opterr)
    return XapiError("SR_BACKEND_FAILURE_%d" % value, "", text, stderr)


def raw_error(value, text, stderr=""):
    """Drivers that raise bare numbers (GlusterFS, CephFS, MooseFS mount failures)."""
    return XapiError("SR_BACKEND_FAILURE_%d" % value, "", text, stderr)
