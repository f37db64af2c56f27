"""What the client's calls return: an Attachment (a volume on a VM) or a Connection (a volume
on a host), built from the plugin's JSON answer and given back to detach()/disconnect()."""

from typing import Any, Dict, Tuple


class _Record:
    FIELDS: Tuple[str, ...] = ()

    def __init__(self, **values: Any) -> None:
        for f in self.FIELDS:
            setattr(self, f, values.get(f))

    def to_dict(self) -> Dict[str, Any]:
        return dict((f, getattr(self, f)) for f in self.FIELDS if getattr(self, f) is not None)

    def __repr__(self) -> str:
        return "%s(%s)" % (
            type(self).__name__,
            ", ".join("%s=%r" % kv for kv in sorted(self.to_dict().items())),
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Record)
            and type(self) is type(other)
            and self.to_dict() == other.to_dict()
        )


class Attachment(_Record):
    """A volume attached to a VM: what attach() returns and detach() accepts."""

    FIELDS = (
        "sr_uuid",
        "vdi_uuid",
        "vbd_uuid",
        "vm_uuid",
        "userdevice",
        "device",
        "plugged",
        "mode",
        "host_uuid",
        "driver_volume_type",
        "volume_id",
        "note",
        "ignored",
    )
    sr_uuid: Any
    vdi_uuid: Any
    vbd_uuid: Any
    vm_uuid: Any
    userdevice: Any
    device: Any
    plugged: Any
    mode: Any
    host_uuid: Any
    driver_volume_type: Any
    volume_id: Any
    note: Any
    ignored: Any


class Connection(_Record):
    """A volume connected to a host without a VM."""

    FIELDS = ("sr_uuid", "vdi_uuid", "host_uuid", "driver_volume_type", "ignored")
    sr_uuid: Any
    vdi_uuid: Any
    host_uuid: Any
    driver_volume_type: Any
    ignored: Any
