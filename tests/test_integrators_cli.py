"""The CLI's extend, connector, migrate and reconcile against `xapisim serve` and a real tgt."""

import json

import XenAPI

from test_cli import served, xenvol  # noqa: F401  (the served fixture)

MiB = 1 << 20


def test_extend_connector_migrate_reconcile(served, peers, tmp_path):  # noqa: F811
    s = XenAPI.Session(served["url"])
    s.login_with_password("root", served["password"], "2.21", "tests")
    x = s.xenapi
    try:
        iqn = peers.new_target(luns=(1,), size_mb=8)
        path = tmp_path / "vol.json"
        path.write_text(
            json.dumps(
                {
                    "driver_volume_type": "iscsi",
                    "data": {
                        "target_portal": peers.iscsi.portal,
                        "target_iqn": iqn,
                        "target_lun": 1,
                        "volume_id": "c1",
                    },
                }
            )
        )
        vm = x.VM.get_by_name_label("vm-3")[0]
        for vbd in x.VM.get_VBDs(vm):  # its local root disk cannot live-migrate
            x.VBD.unplug(vbd)
            x.VBD.destroy(vbd)
        p = xenvol(served, "connector", "vm-3")
        assert p.returncode == 0, p.stderr
        assert "iqn.2026-11.org.xenvol.sim:xs02" in p.stdout
        assert "export it to each" in p.stdout
        hosts = json.loads(xenvol(served, "--json", "connector", "vm-3").stdout)["plug_hosts"]
        assert len(hosts) == 2
        assert xenvol(served, "attach", "vm-3", str(path)).returncode == 0
        peers.iscsi.resize_lun(iqn, 1, 16)
        p = xenvol(served, "extend", str(path))
        assert p.returncode == 0, p.stderr
        assert "%d -> %d bytes (grew)" % (8 * MiB, 16 * MiB) in p.stdout
        assert "the guest sees the new size" in p.stdout
        p = xenvol(served, "migrate", "vm-3", "xs03")
        assert p.returncode == 0, p.stderr
        assert "from xs02 to xs03" in p.stdout and "PBD removed" in p.stdout
        assert x.host.get_name_label(x.VM.get_resident_on(vm)) == "xs03"
        p = xenvol(served, "reconcile")
        assert p.returncode == 0 and "every pool-wide SR" in p.stdout
        p = xenvol(served, "migrate", "vm-3", "xs09")
        assert p.returncode == 3, p.stderr
        assert xenvol(served, "detach", "vm-3", "xvdb").returncode == 0
    finally:
        s.xenapi.session.logout()
