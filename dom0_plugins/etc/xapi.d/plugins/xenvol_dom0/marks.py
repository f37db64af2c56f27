"""The other_config keys xenvol writes, on which objects, and what each means. A mark is bound
to the object it marks: gc, a release and a rollback remove only what carries xenvol's mark,
and the values name who made it (a host uuid, an op id), never an age across hosts."""

# SR.other_config
INTRODUCED = "xenvol-introduced"  # "true": xenvol introduced the SR and may forget it (with
#                                   every PBD, all of them xenvol's)
PBD_MARK = "xenvol-pbd-"  # + host uuid, "true": xenvol made that host's PBD of an SR it did
#                           not introduce
PLACEMENT = "xenvol-placement"  # "pool": kept plugged on every enabled, live host (reconcile)
LEASE = "xenvol-lease"  # "<host uuid>/<op id>/<pid>/<time>": the pool-wide SR lease (lease.py)

# VDI.other_config
CONNECTED = "xenvol-connected-"  # + host uuid, "true": connect_volume holds the VDI for that host
LUN_CLAIM = "xenvol-lun-claim"  # "<host uuid>/<op id>": the raw LUN xenvol claimed by VDI.create
NAMED = "xenvol-named"  # the name xenvol gave the VDI (a name someone else gave is kept)

# VBD.other_config (MADE_BY, HOST and OP on secrets too)
MADE_BY = "xenvol"  # VBD: "true", xenvol made it; secret: "plugin" (made by the plugin for one
#                     operation) or "client" (made by the client for one call, consumed by it)
HOST = "xenvol-host"  # the uuid of the host whose plugin made the VBD or secret
OP = "xenvol-op"  # the op id of the call that made the VBD or secret; on the client's task:
#                   the operation it waits for
DRIVER = "xenvol-driver"  # VBD: the connection_info's driver_volume_type
VOLUME_ID = "xenvol-volume-id"  # VBD: the volume's id as the caller gave it
VOLUME_NAME = "xenvol-volume-name"  # VBD: the name xenvol gives the volume's VDI

# secret.other_config (a client-made secret gc may expire)
TTL = "xenvol-ttl"  # seconds it may live from when gc first saw it
SEEN = "xenvol-seen"  # "<host uuid> <boot id> <seconds since that boot>": when gc first saw it

# task.other_config (the client's task of a plugin call)
STEP = "xenvol-step"  # the step the operation is at (call.Progress)
