"""HTTP transports: one TCP listener per host (same port, one loopback address each, as
real hosts share port 80/443) and one unix socket per host at <root>/var/lib/xcp/xapi."""
import errno
import http.server
import os
import socket
import socketserver
import ssl
import threading

from .sim import Endpoint


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # Headers and body go out in two writes; without TCP_NODELAY every keep-alive call
        # would wait for the peer's delayed ACK (~40 ms).
        if self.request.family != socket.AF_UNIX:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        http.server.BaseHTTPRequestHandler.setup(self)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            out = self.server.sim.handle(self.server.endpoint, body)
            code = 200
        except Exception as e:  # malformed XML: xapi answers HTTP 500 with an HTML body
            out = ("<html><body><h1>HTTP 500 internal server error</h1>%s</body></html>"
                   % type(e).__name__).encode()
            code = 500
        self.send_response(code)
        self.send_header("Content-Type", "text/xml" if code == 200 else "text/html")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass

    def address_string(self):
        return "unix" if isinstance(self.client_address, (str, bytes)) else \
            http.server.BaseHTTPRequestHandler.address_string(self)


class _TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Servers(object):
    """Start every endpoint of a simulator; `urls` lists one base URL per host."""

    def __init__(self, sim, port=0, tls=None):
        """tls: (certfile, keyfile) to serve HTTPS, as real hosts do on 443."""
        self.sim = sim
        self.servers = []
        self.urls = []
        self.tls = None
        if tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*tls)
        self._start_tcp(port)
        for host in sim.hosts:
            path = host.socket_path
            if os.path.exists(path):
                os.unlink(path)
            srv = _UnixServer(path, _Handler)
            self._serve(srv, Endpoint(host, "unix"))

    def _start_tcp(self, port):
        for _attempt in range(20):
            try:
                servers, chosen = [], port
                for host in self.sim.hosts:
                    srv = _TCPServer((host.address, chosen), _Handler)
                    chosen = srv.server_address[1]
                    servers.append((srv, host))
                break
            except OSError as e:
                for srv, _h in servers:
                    srv.server_close()
                if e.errno != errno.EADDRINUSE or port:
                    raise
        else:
            raise OSError(errno.EADDRINUSE, "no port free on every host address")
        for srv, host in servers:
            if self.tls:
                srv.socket = self.tls.wrap_socket(srv.socket, server_side=True)
            self._serve(srv, Endpoint(host, "tcp"))
            self.urls.append("%s://%s:%d/" % ("https" if self.tls else "http", host.address,
                                              srv.server_address[1]))

    def _serve(self, srv, endpoint):
        srv.sim = self.sim
        srv.endpoint = endpoint
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        t.start()
        self.servers.append(srv)

    @property
    def master_url(self):
        return self.urls[0]

    def stop(self):
        self.sim.stopping.set()
        stoppers = [threading.Thread(target=srv.shutdown) for srv in self.servers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for srv in self.servers:
            srv.server_close()
        for host in self.sim.hosts:
            try:
                os.unlink(host.socket_path)
            except OSError:
                pass
        self.servers = []


