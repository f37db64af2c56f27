"""A volume driver with the interface orchestrators know from libvirt volume drivers:
connect_volume(connection_info, mount_device) / disconnect_volume(connection_info,
mount_device), bound to one instance, so xenvol plugs in where a libvirt driver was."""


class XenVolumeDriver(object):
    def __init__(self, client, instance):
        """client: a xenvol.Client; instance: the VM's uuid or name label."""
        self.client = client
        self.instance = instance

    def connect_volume(self, connection_info, mount_device):
        att = self.client.attach(connection_info, self.instance,
                                 mountpoint=mount_device or "autodetect")
        return att.to_dict()

    def disconnect_volume(self, connection_info, mount_device):
        return [a.to_dict() for a in self.client.detach(vm=self.instance,
                                                        mountpoint=mount_device)]
