"""What dom0's Python has beside XenAPI: XenAPIPlugin. The simulator's dom0 Python finds this
directory on its path (a .pth file), as dom0 finds the module in its site-packages."""
