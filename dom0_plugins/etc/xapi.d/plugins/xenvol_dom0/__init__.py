"""xenvol's dom0 side: the volume-driver framework behind the `xenvol` XAPI plugin.

Runs on dom0's Python (3.6 on XenServer 8 / XCP-ng 8.3, up to 3.12) with the standard
library and XenAPI only."""
