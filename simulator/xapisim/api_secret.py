"""secret messages."""

from .errors import XapiError
from .handlers import message, require_fields


@message("secret.create")
def create(ctx, rec):
    rec = require_fields("secret", rec)
    return ctx.db.create(
        "secret", {"value": rec["value"], "other_config": dict(rec.get("other_config", {}))}
    )


@message("secret.introduce")
def introduce(ctx, uuid, value, other_config=None):
    if any(r["uuid"] == uuid for r in ctx.db.tables["secret"].values()):
        raise XapiError("DB_UNIQUENESS_CONSTRAINT_VIOLATION", "secret", "uuid", uuid)
    return ctx.db.create(
        "secret", {"uuid": uuid, "value": value, "other_config": dict(other_config or {})}
    )


@message("secret.destroy")
def destroy(ctx, ref):
    ctx.db.destroy("secret", ref)
