"""The simulator's `xe`: list commands with params= and --minimal, host-call-plugin, errors."""

import os
import subprocess
import sys

import pytest

XE = os.path.join(os.path.dirname(sys.executable), "xapisim-xe")


@pytest.fixture
def xe(pool):
    env = dict(os.environ, XAPISIM_URL=pool.url, XAPISIM_PASSWORD=pool.info["password"])

    def run(*args, ok=True):
        p = subprocess.run([XE] + list(args), env=env, capture_output=True, text=True, timeout=30)
        assert (p.returncode == 0) == ok, p.stderr
        return p.stdout if ok else p.stderr

    return run


def test_lists(pool, xe):
    out = xe("host-list")
    assert out.count("name-label ( RW): xs0") == 3 and out.startswith("uuid ( RO)")
    assert xe("host-list", "--minimal").strip().count(",") == 2
    vms = xe("vm-list", "power-state=halted", "params=name-label", "--minimal").strip()
    assert sorted(vms.split(",")) == ["vm-2", "vm-4"]
    out = xe("vm-list", "name-label=vm-1")
    assert "power-state ( RO): running" in out and "vm-2" not in out
    assert "type ( RO): ext" in xe("sr-list")
    assert "virtual-size ( RO): %d" % (8 << 30) in xe("vdi-list")
    assert "vm-name-label ( RO): vm-1" in xe("vbd-list")
    assert "device-config ( RO): device: /dev/sda3" in xe("pbd-list")
    assert "other-config" in xe("vm-list", "name-label=vm-1", "params=all")


@pytest.mark.slow
def test_call_plugin_and_errors(pool, xe):
    for h in pool.sim.hosts:
        path = os.path.join(h.plugins_dir, "hello")
        with open(path, "w") as fh:
            fh.write(
                "#!/usr/bin/python3\nimport XenAPIPlugin\n\n\ndef hi(session, args):\n"
                "    return 'hi ' + args.get('who', '?')\n\n\nif __name__ == '__main__':\n"
                "    XenAPIPlugin.dispatch({'hi': hi})\n"
            )
        os.chmod(path, 0o755)
    uuid = pool.host(1).uuid
    assert (
        xe("host-call-plugin", "host-uuid=" + uuid, "plugin=hello", "fn=hi", "args:who=there")
        == "hi there\n"
    )
    err = xe("host-call-plugin", "host-uuid=" + uuid, "plugin=nope", "fn=hi", ok=False)
    assert "name: nope" in err
    err = xe("host-call-plugin", "host-uuid=" + uuid, "plugin=hello", "fn=bye", ok=False)
    assert "Error code: UNKNOWN_XENAPI_PLUGIN_FUNCTION" in err
    secret = xe("secret-create", "value=abc").strip()
    xe("secret-destroy", "uuid=" + secret)


def test_a_missing_parameter_is_a_usage_error(pool, xe):
    """As xe: `Required parameter not found`, the usage hint, exit 1; never a traceback."""
    uuid = pool.host(0).uuid
    for args, missing in (
        (("host-call-plugin", "plugin=xenvol", "fn=version"), "host-uuid"),
        (("host-call-plugin", "host-uuid=" + uuid, "plugin=xenvol"), "fn"),
        (("host-call-plugin", "host-uuid=" + uuid, "fn=version"), "plugin"),
        (("update-upload",), "file-name"),
        (("secret-destroy",), "uuid"),
    ):
        err = xe(*args, ok=False)
        assert err == "Required parameter not found: %s\nFor usage run: 'xe help'\n" % missing
