"""The xenvol supplemental pack: build (make pack), verify without a XenServer, install over SSH."""
