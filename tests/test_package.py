"""What integrators and packagers expect of the xenvol distribution: the client needs only
XenAPI (the pack tools are the `pack` extra and say so when missing), LICENSE and py.typed in
the sdist and the wheel, classifiers and project URLs, `python -m xenvol`, `--version`,
--json/--minimal after the command, every command's help with a description and an example,
frozen result records."""

import dataclasses
import email
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import xenvol
from conftest import REPO
from test_cli import BIN, served  # noqa: F401  (the served fixture)
from test_cli import xenvol as run_xenvol


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """The wheel and sdist, built offline from a copy of the tree (nothing written here)."""
    src = tmp_path_factory.mktemp("src")
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(REPO, f), str(src))
    shutil.copytree(
        os.path.join(REPO, "client"),
        str(src / "client"),
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    version = "dom0_plugins/etc/xapi.d/plugins/xenvol_dom0/VERSION"
    os.makedirs(str(src / os.path.dirname(version)))
    shutil.copy(os.path.join(REPO, version), str(src / version))
    out = tmp_path_factory.mktemp("dist")
    for hook in ("build_wheel", "build_sdist"):  # one process each (setuptools keeps state)
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from setuptools import build_meta as b; b.%s(sys.argv[1])" % hook,
                str(out),
            ],
            cwd=str(src),
            check=True,
            capture_output=True,
            timeout=300,
        )
    names = os.listdir(str(out))
    wheel = [n for n in names if n.endswith(".whl")][0]
    sdist = [n for n in names if n.endswith(".tar.gz")][0]
    return str(out / wheel), str(out / sdist)


def test_wheel_and_sdist(dists):
    wheel, sdist = dists
    with zipfile.ZipFile(wheel) as z:
        files = z.namelist()
        meta_name = [f for f in files if f.endswith(".dist-info/METADATA")][0]
        meta = email.message_from_string(z.read(meta_name).decode())
    assert "xenvol/py.typed" in files and "xenvol_pack/py.typed" in files
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files)
    assert meta["Version"] == xenvol.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    # The client needs XenAPI; paramiko and pycdlib only with the pack extra.
    requires = meta.get_all("Requires-Dist")
    plain = [r for r in requires if "extra ==" not in r]
    assert plain == ["XenAPI>=23.8"], requires
    assert any(r.startswith("paramiko") and 'extra == "pack"' in r for r in requires)
    assert any(r.startswith("pycdlib") and 'extra == "pack"' in r for r in requires)
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert any(u.startswith("Changelog, ") for u in meta.get_all("Project-URL"))
    with tarfile.open(sdist) as t:
        names = t.getnames()
    assert any(n.endswith("/LICENSE") for n in names)
    with open(os.path.join(REPO, "LICENSE")) as fh:
        assert "Apache License" in fh.read(200)


def test_pack_without_the_extra_says_how_to_install_it(tmp_path):
    # A client-only install: the pack tools' libraries are not importable.
    code = (
        "import sys; sys.modules['paramiko'] = None; from xenvol.cli import main; "
        "sys.exit(main(['pack', 'verify', 'x.iso']))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 6 and "pip install 'xenvol[pack]'" in p.stderr, p.stderr


def test_version_and_python_m():
    for argv in ([os.path.join(BIN, "xenvol")], [sys.executable, "-m", "xenvol"]):
        p = subprocess.run(argv + ["--version"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.strip() == "xenvol %s" % xenvol.__version__


def test_every_command_has_a_description_and_an_example():
    from xenvol.cli import EXAMPLES

    for name in EXAMPLES:
        p = subprocess.run(
            [os.path.join(BIN, "xenvol")] + name.split() + ["--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        description = lines[lines.index("") + 1]  # after the usage
        assert description.endswith(".") and len(description) < 120, (name, description)
        assert "example:\n  xenvol " + name in p.stdout, name
        if name != "pack":
            assert "--json" in p.stdout and "--minimal" in p.stdout, name


def test_output_options_after_the_command(served):  # noqa: F811
    p = run_xenvol(served, "version", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["client"] == xenvol.__version__
    p = run_xenvol(served, "list", "--minimal")
    assert p.returncode == 0 and p.stdout == "\n"
    p = run_xenvol(served, "--json", "gc", "--pool")
    assert p.returncode == 0 and json.loads(p.stdout) == []
    p = run_xenvol(served, "--json", "list", "--minimal")
    assert p.returncode == 2 and "give one" in p.stderr


def test_records_are_frozen_hashable_and_asdict():
    a = xenvol.Attachment.from_dict(
        {"vbd_uuid": "v", "vdi_uuid": "d", "ignored": ["data.discard"], "new_key": 1}, op_id="o"
    )
    b = xenvol.Attachment.from_dict({"vbd_uuid": "v", "vdi_uuid": "d", "ignored": ["data.discard"]})
    assert a == b and hash(a) == hash(b) and a.op_id == "o"  # the op id is not the volume
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.vbd_uuid = "x"  # type: ignore[misc]
    assert dataclasses.asdict(a)["ignored"] == ("data.discard",)
    assert a.to_dict() == {
        "vbd_uuid": "v",
        "vdi_uuid": "d",
        "ignored": ["data.discard"],
        "op_id": "o",
    }
    assert len({a, b}) == 1


def test_the_readme_python_example_runs_as_written():
    """README's self-contained example against the quick start's pool: its output as shown."""
    import re

    from conftest import PLUGINS, Pool

    with open(os.path.join(REPO, "README.md")) as fh:
        text = fh.read()
    code, shown = re.search(
        r"```python\n(import os\n\nimport xenvol\n.*?)```\n```\n(.*?)```", text, re.S
    ).groups()
    pool = Pool(hosts=1, vms=2, plugins=PLUGINS)
    try:
        d = os.path.join(pool.host(0).root, "var/lib/xenvol/volumes")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "6f1c2d3e-0000-4000-8000-000000000001.raw"), "wb") as fh:
            fh.truncate(64 << 20)
        env = dict(os.environ, XENVOL_URL=pool.url, XENVOL_PASSWORD=pool.info["password"])
        p = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 0, p.stderr
        out, expected = p.stdout.splitlines(), shown.splitlines()
        assert out[0].split()[:3] == expected[0].split()[:3]  # the op id is new each run
        assert out[1:] == expected[1:]
    finally:
        pool.close()
