"""HTTP transports: one TCP listener per host (same port, one loopback address each, as
real hosts share port 80/443) and one unix socket per host at <root>/var/lib/xcp/xapi."""

import errno
import http.server
import os
import socket
import socketserver
import ssl
import struct
import sys
import threading

from . import wire
from .sim import Endpoint, Simulator


class _Serving(socketserver.BaseServer):
    """What a handler reads from its server (both set by Servers._serve)."""

    sim: Simulator
    endpoint: Endpoint


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Serving

    def setup(self):
        # xen-api ocaml/libs/http-lib/http_svr.ml bind: TCP_NODELAY on inet sockets.
        if self.request.family != socket.AF_UNIX:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        http.server.BaseHTTPRequestHandler.setup(self)

    def do_POST(self):
        # http_svr.ml read_request_exn: HTTP/1.0 closes unless "Connection: keep-alive"; the
        # answer carries the request's version (get_return_version).
        version = "1.0" if self.request_version == "HTTP/1.0" else "1.1"
        connection = (self.headers.get("Connection") or "").strip().lower()
        close = connection == "close" or (version == "1.0" and connection != "keep-alive")
        # xapi.ml handlers, matched on the longest path prefix: /jsonrpc is JSON-RPC; /, /RPC2
        # and /json all take XML-RPC (api_server.ml callback).
        json_rpc = self.path.split("?", 1)[0].startswith("/jsonrpc")
        endpoint = self.server.endpoint
        if self.request.family == socket.AF_UNIX:
            # Who called over the host's socket (xapisim.kill_plugin needs the plugin's pid).
            creds = self.request.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
            endpoint = Endpoint(endpoint.host, endpoint.transport, struct.unpack("3i", creds)[0])
        try:
            body = self._read_body()
            out = self.server.sim.handle(endpoint, body, json_rpc)
        except wire.RequestError as e:
            return self._internal_error(version, str(e))
        except Exception as e:  # a simulator bug: still an HTTP 500, naming it
            return self._internal_error(version, type(e).__name__)
        # api_server.ml callback/jsoncallback headers after http_svr.ml response_of_request's.
        self._send(
            version,
            "200 OK",
            [
                ("connection", "close" if close else "keep-alive"),
                ("cache-control", "no-cache, no-store"),
                ("content-type", "application/json" if json_rpc else "text/xml"),
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Headers", "X-Requested-With"),
            ],
            out,
        )
        self.close_connection = close

    def _read_body(self):
        # http_svr.ml read_body ~limit: Content-Length required, checked against the limit
        # before a byte of the body is read.
        length = self.headers.get("Content-Length")
        if length is None:
            raise wire.RequestError('Failure("We require a content-length: HTTP header")')
        length = wire.ocaml_int64(length.strip())
        if length > wire.MAX_RPC_SIZE:
            raise wire.RequestError("Http_svr.Client_requested_size_over_limit")
        if length < 0:  # really_read_string cannot make a negative buffer
            raise wire.RequestError('Invalid_argument("Bytes.create")')
        return self.rfile.read(length)

    def _internal_error(self, version, extra):
        # http_svr.ml handle_one -> response_internal_error: HTML, and the connection closes.
        self._send(
            version,
            "500 Internal Error",
            [
                ("content-type", "text/html"),
                ("connection", "close"),
                ("cache-control", "no-cache, no-store"),
            ],
            wire.internal_error_body(extra),
        )
        self.close_connection = True

    def _send(self, version, status, headers, body):
        self.wfile.write(wire.http_response(version, status, headers, body))
        self.wfile.flush()

    def log_message(self, *args):
        pass

    def address_string(self):
        return (
            "unix"
            if isinstance(self.client_address, (str, bytes))
            else http.server.BaseHTTPRequestHandler.address_string(self)
        )


# xen-api ocaml/xapi/xapi_globs.ml listen_backlog (128), given to Http_svr.bind for the TCP
# and unix listeners (xapi_http.ml); socketserver's default of 5 resets a burst of clients.
LISTEN_BACKLOG = 128


class _TCPServer(_Serving, socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG


class _UnixServer(_Serving, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def handle_error(self, request, client_address):
        # A plugin killed mid-call (xapisim.kill_plugin, a host reboot) is gone: xapi drops
        # the connection quietly.
        if isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            return
        socketserver.UnixStreamServer.handle_error(self, request, client_address)


class Servers:
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
            self.urls.append(
                "%s://%s:%d/"
                % ("https" if self.tls else "http", host.address, srv.server_address[1])
            )

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
        self.sim.events.stop()
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
