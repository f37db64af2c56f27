"""xapisim: a stateful XAPI simulator for testing dom0 plugins and their clients.

It speaks XAPI's XML-RPC wire format over HTTP and unix sockets, runs host plugins the way
xapi does (exec with the XML-RPC request as argv[1]), and drives real storage peers
(a userspace iSCSI target, a userspace NFS server) behind its storage managers.
"""
