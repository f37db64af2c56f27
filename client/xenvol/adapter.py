"""Adapters in the shapes orchestrators already call, so xenvol plugs in where another volume
driver was:

- XenVolumeDriver: libvirt volume drivers' connect_volume(connection_info, mount_device) /
  disconnect_volume(connection_info, mount_device), bound to one instance;
- ComputeVolumeDriver: a compute driver's connect_volume(connection_info, instance) /
  disconnect_volume(connection_info, instance) / extend_volume(connection_info, instance,
  requested_size);
- XenConnector: os-brick's connector (get_connector_properties, connect_volume(props) ->
  device_info, disconnect_volume(props, device_info, force, ignore_errors),
  extend_volume(props)), props being connection_info["data"]."""

from typing import Any, Dict, List, Optional

from . import errors
from .client import Client
from .records import Attachment, Connection

Info = Dict[str, Any]


def _instance(instance: Any) -> Any:
    """A VM uuid or name, or an object/dict with a uuid (a nova instance, say)."""
    if isinstance(instance, dict):
        return instance.get("uuid") or instance.get("name")
    return getattr(instance, "uuid", instance)


def _volume_id(connection_info: Info) -> Any:
    data = connection_info.get("data") or {}
    return data.get("volume_id") or connection_info.get("serial")


class XenVolumeDriver:
    def __init__(self, client: Client, instance: str) -> None:
        """client: a xenvol.Client; instance: the VM's uuid or name label."""
        self.client = client
        self.instance = instance

    def connect_volume(self, connection_info: Info, mount_device: Optional[str]) -> Info:
        att = self.client.attach(
            connection_info, self.instance, mountpoint=mount_device or "autodetect"
        )
        return att.to_dict()

    def disconnect_volume(self, connection_info: Info, mount_device: str) -> List[Info]:
        return [a.to_dict() for a in self.client.detach(vm=self.instance, mountpoint=mount_device)]


class ComputeVolumeDriver:
    """The volume half of a compute driver. connect_volume also records the attachment in
    connection_info["data"]["xenvol"] (as nova keeps device_path there), which
    disconnect_volume uses; without it, the instance's disk with the volume's volume_id."""

    def __init__(self, client: Client, placement: Optional[str] = None) -> None:
        self.client = client
        self.placement = placement

    def connect_volume(
        self, connection_info: Info, instance: Any, mountpoint: str = "autodetect"
    ) -> Info:
        att = self.client.attach(
            connection_info, _instance(instance), mountpoint=mountpoint, placement=self.placement
        )
        connection_info.setdefault("data", {})["xenvol"] = att.to_dict()
        return att.to_dict()

    def disconnect_volume(self, connection_info: Info, instance: Any) -> List[Info]:
        vm = _instance(instance)
        recorded = (connection_info.get("data") or {}).get("xenvol")
        if recorded and recorded.get("vbd_uuid"):
            att = Attachment.from_dict(recorded)
        else:
            volume_id = _volume_id(connection_info)
            found = [
                a for a in self.client.attachments(vm) if volume_id and a.volume_id == volume_id
            ]
            if not found:
                return []  # not attached: detaching is idempotent
            att = found[0]
        return [a.to_dict() for a in self.client.detach(attachment=att)]

    def extend_volume(
        self, connection_info: Info, instance: Any, requested_size: Optional[int]
    ) -> int:
        """After the backend grew the volume; returns the size the pool now sees (bytes).
        Raises BackendFailure when that is still below requested_size."""
        out = self.client.extend(connection_info)
        if requested_size and out["new_size"] < int(requested_size):
            raise errors.BackendFailure(
                "the volume is %d bytes on the pool, below the %d requested: has the backend "
                "grown it?" % (out["new_size"], int(requested_size)),
                "XENVOL_BACKEND_FAILURE",
                details=out,
            )
        return int(out["new_size"])


class XenConnector:
    """os-brick's connector interface over xenvol. protocol: the driver_volume_type
    ("iscsi", "fibre_channel", "nfs", ...); instance: a VM to attach to (device_info is then
    its disk), else host: connect to that host without a VM (boot from volume, a migration
    destination)."""

    def __init__(
        self,
        client: Client,
        protocol: str,
        instance: Any = None,
        host: Optional[str] = None,
        placement: Optional[str] = None,
    ) -> None:
        if instance is None and host is None:
            raise errors.InvalidArgument(
                "XenConnector: give instance or host", details={"field": "instance"}
            )
        self.client = client
        self.protocol = protocol
        self.instance = _instance(instance) if instance is not None else None
        self.host = host
        self.placement = placement

    def _info(self, props: Info) -> Info:
        return {"driver_volume_type": self.protocol, "data": props}

    def get_connector_properties(
        self, multipath: bool = False, enforce_multipath: bool = False
    ) -> Info:
        """os-brick's dict (initiator, wwpns, wwnns, nqn, host, ip, multipath, os_type,
        platform) of the first host the volume is plugged on, plus xenvol_hosts: every such
        host's (the array must export the volume to each)."""
        out = self.client.connector(
            vm=self.instance, host=self.host, placement=self.placement or "host"
        )
        props = dict(out["connector"])
        props["multipath"] = bool(multipath) and props.get("multipath", False)
        if enforce_multipath and multipath and not props["multipath"]:
            raise errors.UnsupportedVolume(
                "multipathing is not enabled on host %s" % props.get("host"),
                "XENVOL_UNSUPPORTED_VOLUME",
            )
        props["xenvol_hosts"] = out["hosts"]
        return props

    def connect_volume(self, connection_properties: Info) -> Info:
        info = self._info(connection_properties)
        if self.instance is not None:
            att = self.client.attach(info, self.instance, placement=self.placement)
            return dict(att.to_dict(), type="xen_vbd", path="/dev/" + (att.device or ""))
        assert self.host is not None  # __init__ wants one of them
        conn = self.client.connect(info, self.host, placement=self.placement)
        return dict(conn.to_dict(), type="xen_vdi")

    def disconnect_volume(
        self,
        connection_properties: Info,
        device_info: Optional[Info],
        force: bool = False,
        ignore_errors: bool = False,
    ) -> None:
        """force: accepted for os-brick's signature; xenvol's detach already retries a
        refusing guest a bounded number of times and never forces an unplug."""
        try:
            if device_info and device_info.get("vbd_uuid"):
                self.client.detach(attachment=Attachment.from_dict(device_info))
            elif device_info and device_info.get("vdi_uuid"):
                self.client.disconnect(Connection.from_dict(device_info))
            else:
                self.client.disconnect(
                    connection_info=self._info(connection_properties), host=self.host
                )
        except errors.XenvolError:
            if not ignore_errors:
                raise

    def extend_volume(self, connection_properties: Info) -> int:
        """The new size in bytes, as os-brick returns it."""
        return int(self.client.extend(self._info(connection_properties))["new_size"])
