"""What the builder, the verifier and the installer agree on."""
import os
import subprocess
import uuid as uuidlib

LABEL = "xenvol"
PAYLOAD = "xenvol-xapi-plugin"
STAMP = "update-" + LABEL
KEY_FILE = "RPM-GPG-KEY-xenvol"
PLUGIN = "/etc/xapi.d/plugins/xenvol"
# The update uuid is uuid5 of label and version in this project namespace: a new uuid per
# version (xapi refuses a second upload of one uuid), the same uuid for the same version.
NAMESPACE = uuidlib.UUID("7a1d0b52-3f6e-5c4b-9a8e-1e2f3a4b5c6d")


class PackError(Exception):
    pass


def update_uuid(label, version):
    return str(uuidlib.uuid5(NAMESPACE, "%s/%s" % (label, version)))


def iso_name(version):
    return "%s-%s.iso" % (LABEL, version)


def rpm_name(version):
    return "%s-%s-1.noarch.rpm" % (PAYLOAD, version)


def run(argv, env=None, cwd=None, input_text=None):
    """Run a tool; a failure says which and why."""
    full_env = dict(os.environ, LC_ALL="C")
    full_env.update(env or {})
    p = subprocess.run(argv, env=full_env, cwd=cwd, input=input_text, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    if p.returncode != 0:
        raise PackError("%s failed (%d): %s" % (os.path.basename(argv[0]), p.returncode,
                                                (p.stderr or p.stdout).strip()[-2000:]))
    return p.stdout


def gpg(home, *args, **kw):
    return run(["gpg", "--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback"]
               + list(args), **kw)


def stop_agent(home):
    """gpg starts an agent for its homedir; stop ours (and only ours) when done."""
    subprocess.call(["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
