"""What the builder, the verifier and the installer agree on."""

import os
import subprocess
import uuid as uuidlib
from typing import Any, Dict, List, Mapping, Optional, Sequence

LABEL = "xenvol"
PAYLOAD = "xenvol-xapi-plugin"
STAMP = "update-" + LABEL
CONTROL = "control-" + LABEL
# The version gate, as build-update --base-requires writes it: xapi's pool_update.precheck
# installs the control package from the update's repository, and yum/dnf refuse it where
# xcp-ng-release / xenserver-release provide an older product-version (XCP-ng 8.2.1,
# Citrix Hypervisor 8.2: 8.2.x; XCP-ng 8.3: 8.3.0; XenServer 8: 8.4.0). Python 3 XenAPIPlugin
# exists from 8.3 / XenServer 8 on.
GATE = ("product-version", ">=", "8.3.0")
# The throwaway key's user id says what it is, so verify and install can warn about it.
TEST_KEY_NAME = "xenvol TEST signing key (NOT FOR PRODUCTION)"
TEST_KEY_EMAIL = "xenvol-test@example.invalid"
KEY_FILE = "RPM-GPG-KEY-xenvol"
PLUGIN = "/etc/xapi.d/plugins/xenvol"
# The update uuid is uuid5 of label and version in this project namespace: a new uuid per
# version (xapi refuses a second upload of one uuid), the same uuid for the same version.
NAMESPACE = uuidlib.UUID("7a1d0b52-3f6e-5c4b-9a8e-1e2f3a4b5c6d")


class PackError(Exception):
    """A pack tool failed: `code` and `details` are what `xenvol pack … --json` prints."""

    def __init__(
        self, message: str, code: str = "PACK_ERROR", details: Optional[Dict[str, Any]] = None
    ) -> None:
        Exception.__init__(self, message)
        self.code = code
        self.details: Dict[str, Any] = details or {}


def is_test_key(uid: Optional[str]) -> bool:
    return TEST_KEY_EMAIL in (uid or "") or "TEST signing key" in (uid or "")


def update_uuid(label: str, version: str) -> str:
    return str(uuidlib.uuid5(NAMESPACE, "%s/%s" % (label, version)))


def iso_name(version: str) -> str:
    return "%s-%s.iso" % (LABEL, version)


def rpm_name(version: str) -> str:
    return "%s-%s-1.noarch.rpm" % (PAYLOAD, version)


def run(
    argv: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    input_text: Optional[str] = None,
) -> str:
    """Run a tool; a failure says which and why."""
    full_env = dict(os.environ, LC_ALL="C")
    full_env.update(env or {})
    p = subprocess.run(
        argv,
        env=full_env,
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise PackError(
            "%s failed (%d): %s"
            % (os.path.basename(argv[0]), p.returncode, (p.stderr or p.stdout).strip()[-2000:])
        )
    return p.stdout


def gpg(home: str, *args: str, **kw: Any) -> str:
    return run(
        ["gpg", "--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback"]
        + list(args),
        **kw,
    )


def stop_agent(home: str) -> None:
    """gpg starts an agent for its homedir; stop ours (and only ours) when done."""
    subprocess.call(
        ["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def extract_iso(iso: str, dest: str, only: Optional[Sequence[str]] = None) -> str:
    """Extract an ISO 9660 image (Rock Ridge names) into dest, in pure Python (pycdlib), so
    no xorriso is needed; `only`: a list of paths to extract instead of everything."""
    try:
        import pycdlib
        from pycdlib.pycdlibexception import PyCdlibException
    except ImportError:  # fall back to xorriso where pycdlib is not installed
        return _extract_xorriso(iso, dest, only)
    if not os.path.isfile(iso):
        raise PackError("%s: no such file" % iso)
    image = pycdlib.PyCdlib()
    try:
        image.open(iso)
    except PyCdlibException as e:
        raise PackError("%s is not an ISO 9660 image (%s)" % (iso, e)) from None
    try:
        if not image.has_rock_ridge():
            raise PackError("%s has no Rock Ridge names (xapi needs them: build with -r)" % iso)
        paths: List[str] = []
        if only is not None:
            paths = ["/" + p.lstrip("/") for p in only]
        else:
            for base, _dirs, files in image.walk(rr_path="/"):
                paths += [base.rstrip("/") + "/" + f for f in files]
        for path in paths:
            target = os.path.join(dest, path.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                image.get_file_from_iso(target, rr_path=path)
            except PyCdlibException as e:
                raise PackError("%s has no %s (%s)" % (iso, path, e)) from None
    finally:
        image.close()
    return dest


def _extract_xorriso(iso: str, dest: str, only: Optional[Sequence[str]]) -> str:
    argv = ["xorriso", "-osirrox", "on", "-indev", iso]
    if only is None:
        argv += ["-extract", "/", dest]
    else:
        for p in only:
            argv += ["-extract", "/" + p.lstrip("/"), os.path.join(dest, p.lstrip("/"))]
    try:
        run(argv)
    except PackError:
        raise PackError(
            "%s is not a readable ISO 9660 image (or lacks %s)"
            % (iso, ", ".join(only or ["files"]))
        ) from None
    return dest


def key_info(home: str, keyfile: Optional[str] = None) -> List[Dict[str, Any]]:
    """[(fingerprint, uid, algo, created)] of the public keys in a gnupg home, or in a key file
    (without importing it)."""
    if keyfile:
        out = gpg(home, "--with-colons", "--show-keys", keyfile)
    else:
        out = gpg(home, "--with-colons", "--list-keys")
    keys: List[Dict[str, Any]] = []
    current: Optional[Dict[str, Any]] = None
    for line in out.splitlines():
        f = line.split(":")
        if f[0] == "pub":
            current = {"algo": f[3], "created": int(f[5] or 0), "fpr": None, "uid": ""}
            keys.append(current)
        elif f[0] == "fpr" and current is not None and current["fpr"] is None:
            current["fpr"] = f[9]
        elif f[0] == "uid" and current is not None and not current["uid"]:
            current["uid"] = f[9]
    return keys
