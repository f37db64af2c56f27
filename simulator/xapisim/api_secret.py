"""secret messages."""

from .errors import internal
from .handlers import message, require_fields


@message("secret.create")
def create(ctx, rec):
    rec = require_fields("secret", rec)
    return ctx.db.create(
        "secret", {"value": rec["value"], "other_config": dict(rec.get("other_config", {}))}
    )


@message("secret.introduce")
def introduce(ctx, uuid, value, other_config=None):
    # xen-api ocaml/xapi/xapi_secret.ml introduce: Db.Secret.create; the database's uuid index
    # spans every table (ocaml/database/db_cache_types.ml KeyMap.add_unique) and raises
    # Db_exn.Uniqueness_constraint_violation, which exnHelper.ml has no case for: INTERNAL_ERROR
    # [Printexc.to_string e] (db_exn is in the unwrapped xapi_schema library).
    if any(r.get("uuid") == uuid for table in ctx.db.tables.values() for r in table.values()):
        raise internal('Db_exn.Uniqueness_constraint_violation("secret", "uuid", "%s")' % uuid)
    return ctx.db.create(
        "secret", {"uuid": uuid, "value": value, "other_config": dict(other_config or {})}
    )


@message("secret.destroy")
def destroy(ctx, ref):
    ctx.db.destroy("secret", ref)
