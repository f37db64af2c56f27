"""The checks every driver gets (the shape of test_plugin_iscsi.py): a fault at every XAPI call
the plugin makes, concurrency, idempotence. Assertions are on pool state. And the set-ups the
driver tests share: where a VM runs, a volume for the xensm driver."""

import threading
import uuid

from conftest import PluginError, plugin, state


def placed(pool, xapi, name):
    ref = xapi.VM.get_by_name_label(name)[0]
    host = [h for h in pool.sim.hosts if h.ref == xapi.VM.get_resident_on(ref)][0]
    return ref, xapi.VM.get_uuid(ref), host


def xensm_volume(pool, sr_type, introduce_sr_keys, vdi_fields=None, **data):
    """A volume of a new SR of `sr_type` whose VDI the simulator holds (admin.put_vdi, with
    `vdi_fields`), as connection_info for the xensm driver: the SR introduced with the keys
    named, of `data`'s fields. Returns (the SR's uuid, connection_info)."""
    sr_uuid, vdi = str(uuid.uuid4()), str(uuid.uuid4())
    pool.admin.put_vdi(sr_uuid, vdi, vdi_fields or {})
    fields = {
        "sr_uuid": sr_uuid,
        "sr_type": sr_type,
        "vdi_uuid": vdi,
        "introduce_sr_keys": introduce_sr_keys,
    }
    fields.update(data)
    return sr_uuid, {"driver_volume_type": "xensm", "data": fields}


def fault_at_every_call(pool, info, vm_name="vm-3", least=8):
    xapi = pool.session().xenapi
    _ref, vm_uuid, host = placed(pool, xapi, vm_name)
    before = state(pool)
    pool.admin.clear()
    out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    calls = dict((m, c["plugin"]) for m, c in pool.admin.counts().items() if "plugin" in c)
    plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
    assert state(pool) == before
    points = [
        (m, n)
        for m, total in sorted(calls.items())
        for n in range(1, total + 1)
        if m != "session.get_this_host"
    ]
    assert len(points) >= least, points
    for method, nth in points:
        pool.admin.clear()
        pool.admin.inject_fault(
            method,
            ["INTERNAL_ERROR", "injected at %s #%d" % (method, nth)],
            {"nth": nth, "caller": "plugin"},
        )
        try:
            out = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
        except PluginError as e:
            assert "injected" in e.message, (method, nth, e.message)
            assert "rollback_incomplete" not in e.details
            assert state(pool) == before, (method, nth)
        else:
            pool.admin.clear()
            plugin(xapi, host, "detach_volume", vbd_uuid=out["vbd_uuid"])
            assert state(pool) == before, (method, nth)
    pool.admin.clear()


def idempotent(pool, info, vm_name="vm-1"):
    xapi = pool.session().xenapi
    before = state(pool)
    _ref, vm_uuid, host = placed(pool, xapi, vm_name)
    a = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    again = plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    assert again["vbd_uuid"] == a["vbd_uuid"] and again["note"] == "already attached"
    plugin(xapi, host, "detach_volume", vm_uuid=vm_uuid, mountpoint=a["device"])
    d = plugin(xapi, host, "detach_volume", vm_uuid=vm_uuid, mountpoint=a["device"])
    assert d["detached"] == [] and "not attached" in d["note"]
    assert state(pool) == before
    return a


def concurrent(pool, infos, attached=None):
    """infos: [(vm name, connection_info)] attached in parallel, then detached in parallel;
    they must end up in one SR and leave the pool as it was. `attached(results)`, if given,
    checks the pool between the two; results: {index in infos: (host, attach result)}."""
    before = state(pool)
    results, errors = {}, []

    def attach(i, name, info):
        try:
            x = pool.session().xenapi
            _ref, vm_uuid, host = placed(pool, x, name)
            results[i] = (
                host,
                plugin(x, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid),
            )
        except Exception as e:  # reported below
            errors.append(e)

    def detach(i):
        try:
            host, r = results[i]
            plugin(pool.session().xenapi, host, "detach_volume", vbd_uuid=r["vbd_uuid"])
        except Exception as e:
            errors.append(e)

    _run([threading.Thread(target=attach, args=(i, n, info)) for i, (n, info) in enumerate(infos)])
    assert not errors, errors
    assert len(set(r["sr_uuid"] for _h, r in results.values())) == 1
    if attached:
        attached(results)
    _run([threading.Thread(target=detach, args=(i,)) for i in results])
    assert not errors, errors
    assert state(pool) == before


def _run(threads):
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def refused(pool, info, field, text=None, code=None):
    """A hostile or unsupported connection_info: refused naming the field, pool unchanged."""
    xapi = pool.session().xenapi
    before = state(pool)
    _ref, vm_uuid, host = placed(pool, xapi, "vm-1")
    try:
        plugin(xapi, host, "attach_volume", connection_info=info, vm_uuid=vm_uuid)
    except PluginError as e:
        assert field in e.message, (field, e.message)
        if text:
            assert text in e.message, (text, e.message)
        if code:
            assert e.code == code, (code, e.code)
        assert state(pool) == before
        return e
    raise AssertionError("accepted: %r" % (info,))
