"""What the simulator puts on a plugin's Python path (XenAPIPlugin); its unix-socket
transport also serves the simulator's dom0 `xe`."""
