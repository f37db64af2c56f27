"""What the client's calls return: an Attachment (a volume on a VM) or a Connection (a volume
on a host), built from the plugin's JSON answer and given back to detach()/disconnect().
Frozen dataclasses: hashable, comparable by the volume (not by the op id of the call that
returned them), dataclasses.asdict() for everything, to_dict() for the fields that are set."""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple, Type, TypeVar

R = TypeVar("R", bound="_Record")


def _frozen(value: Any) -> Any:
    """Lists as tuples, dicts as sorted tuples of pairs: a record stays hashable."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def _thawed(value: Any) -> Any:
    return [_thawed(v) for v in value] if isinstance(value, tuple) else value


@dataclasses.dataclass(frozen=True)
class _Record:
    @classmethod
    def from_dict(cls: Type[R], values: Mapping[str, Any], op_id: Optional[str] = None) -> R:
        """A record from the plugin's answer (keys it does not know are left out)."""
        names = set(f.name for f in dataclasses.fields(cls))
        kept = dict((k, _frozen(v)) for k, v in values.items() if k in names)
        if op_id is not None:
            kept["op_id"] = op_id
        return cls(**kept)

    def to_dict(self) -> Dict[str, Any]:
        """The fields that are set, JSON-ready (tuples as lists)."""
        return dict(
            (f.name, _thawed(getattr(self, f.name)))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        )


@dataclasses.dataclass(frozen=True)
class Attachment(_Record):
    """A volume attached to a VM: what attach() returns and detach() accepts. op_id: the
    call that returned it (the dom0 log names it)."""

    sr_uuid: Optional[str] = None
    vdi_uuid: Optional[str] = None
    vbd_uuid: Optional[str] = None
    vm_uuid: Optional[str] = None
    userdevice: Optional[str] = None
    device: Optional[str] = None
    plugged: Optional[bool] = None
    mode: Optional[str] = None
    host_uuid: Optional[str] = None
    driver_volume_type: Optional[str] = None
    volume_id: Optional[str] = None
    note: Optional[str] = None
    ignored: Optional[Tuple[Any, ...]] = None
    op_id: Optional[str] = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Connection(_Record):
    """A volume connected to a host without a VM."""

    sr_uuid: Optional[str] = None
    vdi_uuid: Optional[str] = None
    host_uuid: Optional[str] = None
    driver_volume_type: Optional[str] = None
    ignored: Optional[Tuple[Any, ...]] = None
    op_id: Optional[str] = dataclasses.field(default=None, compare=False)
