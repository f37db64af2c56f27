"""A hostile-input corpus through host.call_plugin (compact and pretty-printed, as
`xe host-call-plugin args:connection_info="$(cat vol.json)"` sends it) and through the client,
and property-based tests of the validators (plugin and client agree)."""

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xenvol
from conftest import PLUGINS, PluginError, state
from test_plugin_iscsi import placed
from xenvol import errors, secrets

sys.path.insert(0, PLUGINS)
from xenvol_dom0 import check, redact
from xenvol_dom0.errors import XenvolError

SR, VDI = "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ab", "5f1c6a4e-0a2b-4c3d-8e9f-0123456789ac"
IQN = "iqn.2026-11.org.example:t1"


def iscsi(**data):
    base = {"target_portal": "192.0.2.1:3260", "target_iqn": IQN, "target_lun": 1}
    base.update(data)
    return {"driver_volume_type": "iscsi", "data": base}


def nfs(**data):
    base = {"server": "192.0.2.1", "serverpath": "/srv", "sr_uuid": SR, "vdi_uuid": VDI}
    base.update(data)
    return {"driver_volume_type": "nfs", "data": base}


# (connection_info, code, field): each refused before anything changes
CORPUS = [
    (iscsi(target_iqn=IQN + "\n"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_iqn"),
    (
        iscsi(
            auth_method="CHAP",
            auth_username="u\r\nnode.startup = automatic",
            auth_password="Chap-Secret-12",
        ),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.auth_username",
    ),
    (
        iscsi(auth_method="CHAP", auth_username="u", auth_password="a\u0085b-secret"),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.auth_password",
    ),
    (iscsi(auth_password="Chap-Secret-12"), "XENVOL_INVALID_CONNECTION_INFO", "data.auth_method"),
    (iscsi(target_portal="fd00::31::3260"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (iscsi(target_portal="fe80::1%eth0"), "XENVOL_INVALID_CONNECTION_INFO", "data.target_portal"),
    (
        {"driver_volume_type": "iscsi", "data": {"target\u0000portal": "x"}},
        "XENVOL_INVALID_CONNECTION_INFO",
        "data",
    ),
    (
        nfs(options="-o vers=4.1,proto=tcp,exec=/bin/sh"),
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.options",
    ),
    (nfs(options="-o vers=2"), "XENVOL_INVALID_CONNECTION_INFO", "data.options"),
    (nfs(options="--bind /etc"), "XENVOL_INVALID_CONNECTION_INFO", "data.options"),
    (nfs(options="-o vers=4.1", nfsversion="3"), "XENVOL_INVALID_CONNECTION_INFO", "data.options"),
    (nfs(keyring="Ceph-Keyring-1"), "XENVOL_INVALID_CONNECTION_INFO", "data.keyring"),
    (nfs(encrypted=True), "XENVOL_POLICY_REFUSED", "data.encrypted"),
    (
        {"driver_volume_type": "xensm", "data": {"sr_uuid": SR, "sr_type": "lvm", "vdi_uuid": VDI}},
        "XENVOL_POLICY_REFUSED",
        "data.sr_type",
    ),
    (
        {
            "driver_volume_type": "xensm",
            "data": {
                "sr_uuid": SR,
                "sr_type": "cifs",
                "vdi_uuid": VDI,
                "introduce_sr_keys": ["server"],
                "server": "//user:Pw-in-url-1@files/share",
            },
        },
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.server",
    ),
    (
        {
            "driver_volume_type": "xensm",
            "data": {
                "sr_uuid": SR,
                "sr_type": "cephfs",
                "vdi_uuid": VDI,
                "introduce_sr_keys": ["keyring"],
                "keyring": "Ceph-Keyring-1",
            },
        },
        "XENVOL_INVALID_CONNECTION_INFO",
        "data.introduce_sr_keys[0]",
    ),
    (
        {"driver_volume_type": "file", "data": {"path": "/etc", "vdi_uuid": VDI}},
        "XENVOL_POLICY_REFUSED",
        "data.path",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("indent", [None, 2], ids=["compact", "pretty"])
def test_hostile_corpus_through_call_plugin(ppool, indent):
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    before = state(ppool)
    for info, code, field in CORPUS:
        text = json.dumps(info, indent=indent)
        try:
            xapi.host.call_plugin(
                host.ref, "xenvol", "attach_volume", {"connection_info": text, "vm_uuid": vm_uuid}
            )
        except Exception as f:
            err = PluginError(f.details)
        else:
            raise AssertionError("accepted %s" % text)
        assert (err.code, err.details.get("field")) == (code, field), (info, err.message)
        assert "Pw-in-url-1" not in err.message and "Ceph-Keyring-1" not in err.message
        assert "/etc/xapi.d" not in err.message and "Traceback" not in err.message
    assert state(ppool) == before


def test_pretty_printed_documents_and_bare_ipv6_portals_are_understood(ppool):
    """A pretty-printed file gets past parsing (here to the SR connect, which fails on a
    portal nobody listens on), and fd00::31:3260 is address fd00::31, port 3260."""
    xapi = ppool.session().xenapi
    _ref, vm_uuid, host = placed(ppool, xapi, "vm-1")
    text = json.dumps(iscsi(target_portal="[::1]:1"), indent=4)
    try:
        xapi.host.call_plugin(
            host.ref, "xenvol", "attach_volume", {"connection_info": text, "vm_uuid": vm_uuid}
        )
    except Exception as f:
        assert PluginError(f.details).code == "XENVOL_BACKEND_FAILURE"
    assert check.host_port("fd00::31:3260", "p") == ("fd00::31", 3260)
    assert check.host_port("fd00::31", "p") == ("fd00::31", 3260)
    assert check.host_port("[fd00::31]:3261", "p") == ("fd00::31", 3261)
    assert check.host_port("::1", "p") == ("::1", 3260)
    assert check.host_port("fd00::1:2", "s", 2049, bare_v6_port=False) == ("fd00::1:2", 2049)


@pytest.mark.slow
def test_hostile_corpus_through_the_client(ppool):
    xapi = ppool.session().xenapi
    before = state(ppool)
    with xenvol.Client(ppool.url, "root", ppool.info["password"]) as c:
        for info, code, field in CORPUS:
            with pytest.raises(errors.InvalidInput) as e:
                c.attach(info, "vm-1")
            assert e.value.code in (code, None)
            # the client may already have moved a secret aside: data.server_password_secret
            assert e.value.field.startswith(field), e.value
        big = iscsi(volume_id="x" * (70 * 1024))
        with pytest.raises(errors.InvalidArgument) as e:
            c.attach(big, "vm-1")
        assert (e.value.code, e.value.field) == ("XENVOL_INVALID_ARGUMENT", "connection_info")
        assert "too large" in e.value.message and "/etc" not in e.value.message
        with pytest.raises(errors.InvalidConnectionInfo):
            c.attach(iscsi(auth_password="a", auth_password_secret=VDI), "vm-1")
    assert state(ppool) == before
    assert xapi.secret.get_all() == []


# ---------------------------------------------------------------------- properties
text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x3000), max_size=300)


@given(st.one_of(text, st.integers(), st.none()))
def test_client_and_plugin_agree_on_passwords(value):
    assert (secrets.password_problem(value) is None) == (check.password_problem(value) is None)
    if check.password_problem(value) is None:
        assert "\n" not in value and "\r" not in value and 0 < len(value) <= 256


def test_client_and_plugin_find_secrets_in_strings_by_the_same_patterns():
    """The client and dom0 are two installs and share no module: the patterns that find a
    secret inside a string (an option, URL userinfo, a type's own export format) are kept the
    same text in both (xenvol/secrets.py, xenvol_dom0/redact.py)."""
    for name in ("_OPTION", "_USERINFO", "_VZ_EXPORT"):
        assert getattr(secrets, name).pattern == getattr(redact, name).pattern, name
    assert dict((k, v.pattern) for k, v in secrets._EXPORT_FORMATS.items()) == dict(
        (k, v.pattern) for k, v in redact._EXPORT_FORMATS.items()
    )


@pytest.mark.slow
@given(st.from_regex(r"[a-zA-Z][a-zA-Z0-9_-]{0,20}", fullmatch=True))
def test_client_and_plugin_share_one_key_list(key):
    assert secrets.is_secret_key(key) == redact.is_secret_key(key)
    assert secrets.is_secret_ref(key) == redact.is_secret_ref(key)
    assert not (redact.is_secret_key(key) and redact.is_secret_ref(key))


words = st.lists(st.from_regex(r"[A-Za-z]{1,12}", fullmatch=True), min_size=1, max_size=12)


@given(
    words,
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=24),
)
def test_scrubbing_masks_whole_values_and_mangles_no_word(ws, password):
    sentence = " ".join(ws)
    for scrub in (redact.Scrubber(), secrets.Scrub([password])):
        if isinstance(scrub, redact.Scrubber):
            scrub.remember(password)
        out = scrub("%s password=%s, %s" % (sentence, password, sentence))
        assert password not in out.replace(sentence, "")
        if password not in sentence:
            assert out.startswith(sentence + " ") and out.endswith(", " + sentence)


@given(st.text(max_size=80))
def test_host_port_never_crashes_and_returns_a_valid_port(value):
    try:
        host, port = check.host_port(value, "p")
    except XenvolError as e:
        assert e.code == "XENVOL_INVALID_CONNECTION_INFO" and e.details["field"] == "p"
    else:
        assert 1 <= port <= 65535 and host and not any(c in host for c in " ;$`/\n")


@given(st.text(max_size=80))
def test_mount_options_accept_only_the_allow_list(value):
    from xenvol_dom0.drivers.nfs import MOUNT_OPTIONS

    try:
        out = check.mount_options(value, MOUNT_OPTIONS, "o")
    except XenvolError as e:
        assert e.details["field"] == "o"
    else:
        for name, v in out:
            assert name in MOUNT_OPTIONS and (v is None or "," not in v and " " not in v)


@settings(max_examples=50)
@given(
    st.recursive(
        st.one_of(st.text(max_size=10), st.integers(), st.booleans()),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_control_characters_are_found_anywhere_in_a_document(doc):
    hidden = any(ord(c) < 32 or ord(c) == 127 for c in _strings(doc))
    try:
        check.no_control_characters(doc, "connection_info")
    except XenvolError:
        assert hidden
    else:
        assert not hidden
    assert check.parse_json(json.dumps(doc, indent=2), "c") == doc


def _strings(obj):
    if isinstance(obj, dict):
        return "".join(k + _strings(v) for k, v in obj.items())
    if isinstance(obj, list):
        return "".join(_strings(v) for v in obj)
    return obj if isinstance(obj, str) else ""
