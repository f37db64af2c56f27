"""Cinder / os-brick volume types that no stock XenServer 8 or XCP-ng 8.3 SR can serve, and
why. Asked for one of them (and no drop-in driver provides it), the plugin says so instead of
"no driver". The SM types are those of sm and xcp-ng/sm (see docs/plugin-api.md)."""

# Type comments only (Python 3.6 syntax); nothing is imported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional  # noqa: F401

DROP_IN = "/etc/xenvol/drivers.d"

_NO_SR = "XenServer/XCP-ng has no SR type for it"

REASONS = {
    "rbd": "Ceph RBD images: %s (the `cephfs` SR is CephFS, a file system, not RBD); a "
    "community RBD SR driver needs its own xenvol driver in %s" % (_NO_SR, DROP_IN),
    "nvme": "NVMe over Fabrics: %s (no NVMe-oF initiator in the SM)" % _NO_SR,
    "nvmeof": "NVMe over Fabrics: %s (no NVMe-oF initiator in the SM)" % _NO_SR,
    "iser": "iSER (iSCSI over RDMA): the `iscsi` SR logs in over TCP only (iscsiadm with the "
    "default tcp transport); %s" % _NO_SR,
    "quobyte": "Quobyte: %s (its client is not part of dom0)" % _NO_SR,
    "vzstorage": "Virtuozzo Storage: %s" % _NO_SR,
    "scaleio": "Dell PowerFlex/ScaleIO (SDC block devices): %s" % _NO_SR,
    "storpool": "StorPool block devices: %s" % _NO_SR,
    "spdk": "SPDK NVMe-oF: %s" % _NO_SR,
    "lightos": "LightOS NVMe/TCP: %s" % _NO_SR,
    "gpfs": "IBM Spectrum Scale (GPFS): %s" % _NO_SR,
    "hgst": "HGST Solutions: %s" % _NO_SR,
    "huaweisdshypervisor": "Huawei SDSHypervisor: %s" % _NO_SR,
    "sheepdog": "Sheepdog: %s" % _NO_SR,
    "drbd": "DRBD block devices from Cinder: %s; XCP-ng's `linstor` SR manages its own DRBD "
    "resources and cannot take one from Cinder" % _NO_SR,
    "vmdk": "VMware VMDK volumes: %s" % _NO_SR,
    "aoe": "ATA over Ethernet: %s" % _NO_SR,
}


def reason(volume_type):
    # type: (str) -> Optional[str]
    return REASONS.get(volume_type.lower())
