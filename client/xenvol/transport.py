"""XML-RPC transports with timeouts, and TLS verification on unless explicitly turned off."""
import ssl
import xmlrpc.client


class Transport(xmlrpc.client.Transport):
    def __init__(self, timeout):
        xmlrpc.client.Transport.__init__(self)
        self.timeout = timeout

    def make_connection(self, host):
        conn = xmlrpc.client.Transport.make_connection(self, host)
        conn.timeout = self.timeout
        return conn


class SafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout, verify=True, cafile=None):
        if verify:
            context = ssl.create_default_context(cafile=cafile)
        else:
            context = ssl._create_unverified_context()  # the caller asked for it explicitly
        xmlrpc.client.SafeTransport.__init__(self, context=context)
        self.timeout = timeout

    def make_connection(self, host):
        conn = xmlrpc.client.SafeTransport.make_connection(self, host)
        conn.timeout = self.timeout
        return conn


def for_url(url, timeout, verify=True, cafile=None):
    if url.lower().startswith("https:"):
        return SafeTransport(timeout, verify, cafile)
    return Transport(timeout)
