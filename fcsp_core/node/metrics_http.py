"""The metrics endpoint: GET /metrics in Prometheus' text format (the exporter's rendering of its collector).

Rendering is coalesced: scrapes that arrive while a rendering runs wait for the next one, which starts after
they arrived, and share its output. So every scrape sees a snapshot taken after it asked, and N concurrent
scrapers cost about one rendering instead of N (50 scrapers on 2 cores stay fast; each rendering reads one
snapshot)."""

from __future__ import annotations

import gzip
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("fcsp.node")


class Rendering:
    """One rendering's output, gzip-compressed on first demand."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._gz: bytes | None = None
        self._lock = threading.Lock()

    def gzipped(self) -> bytes:
        with self._lock:
            if self._gz is None:
                self._gz = gzip.compress(self.body, compresslevel=1)
            return self._gz


class CoalescingRenderer:
    """render() from many threads: each caller gets the output of a rendering that started after it called."""

    def __init__(self, render: Callable[[], bytes]) -> None:
        self._render = render
        self._cond = threading.Condition()
        self._started = 0  # renderings started so far
        self._finished = 0  # the number of the newest finished rendering
        self._running = False
        self._result: Rendering | None = None

    def get(self) -> Rendering:
        with self._cond:
            # A rendering running now may have read its snapshot before we came: we need the next one.
            needed = self._started + 1
            while self._finished < needed:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                number = self._started
                self._cond.release()
                try:
                    result = Rendering(self._render())
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
                self._result, self._finished = result, number
            assert self._result is not None
            return self._result


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}
_MAX_LINE = 8192
_MAX_HEADERS = 100
_INDEX = b"<html><body><h1>fcsp node</h1><p><a href='/metrics'>/metrics</a></p></body></html>\n"


class _Request:
    """What the handler needs of a request: method, path, and three headers."""

    def __init__(self, method: bytes, path: bytes, keep_alive: bool, gzip_ok: bool) -> None:
        self.method = method
        self.path = path
        self.keep_alive = keep_alive
        self.gzip_ok = gzip_ok


def _read_request(rfile: Any) -> _Request | None:
    """Parse one HTTP/1.x request head; None at end of stream; ValueError when malformed."""
    line = rfile.readline(_MAX_LINE + 1)
    if not line:
        return None
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or len(line) > _MAX_LINE:
        raise ValueError("bad request line")
    keep_alive = parts[2] != b"HTTP/1.0"  # HTTP/1.0 clients get one answer per connection
    gzip_ok = False
    for _ in range(_MAX_HEADERS):
        header = rfile.readline(_MAX_LINE + 1)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"connection" and b"close" in value:
            keep_alive = False
        elif name == b"accept-encoding":
            gzip_ok = b"gzip" in value
    else:
        raise ValueError("too many headers")
    return _Request(parts[0], parts[1].split(b"?", 1)[0], keep_alive, gzip_ok)


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with keep-alive, GET and HEAD only: a lean handler, since the per-request cost of
    http.server's general one bounds how many scrapes a second the daemon answers."""

    server: MetricsServer

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # a connection silent this long (every read) is dropped
        super().setup()

    def handle(self) -> None:
        while True:
            try:
                req = _read_request(self.rfile)
            except ValueError:
                self._send(400, b"bad request\n", "text/plain", keep_alive=False)
                return
            except OSError:
                return  # timed out or reset
            if req is None:
                return
            if not self._answer(req) or not req.keep_alive:
                return

    def _answer(self, req: _Request) -> bool:
        head = req.method == b"HEAD"
        if req.method not in (b"GET", b"HEAD"):
            return self._send(405, b"only GET and HEAD\n", "text/plain", keep_alive=req.keep_alive)
        if req.path == b"/metrics":
            try:
                rendering = self.server.renderer.get()
            except Exception as exc:  # noqa: BLE001 - a scrape must get an answer, the daemon must go on
                log.exception("rendering the metrics failed")
                text = f"fcsp node: rendering the metrics failed: {exc}\n".encode()
                return self._send(500, text, "text/plain", keep_alive=req.keep_alive)
            body = rendering.gzipped() if req.gzip_ok else rendering.body
            return self._send(200, body, CONTENT_TYPE_LATEST, req.keep_alive, req.gzip_ok, head)
        if req.path == b"/":
            return self._send(200, _INDEX, "text/html; charset=utf-8", req.keep_alive, head_only=head)
        return self._send(404, b"not found: try /metrics\n", "text/plain", req.keep_alive, head_only=head)

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str,
        keep_alive: bool,
        gzipped: bool = False,
        head_only: bool = False,
    ) -> bool:
        head = (
            f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("Content-Encoding: gzip\r\n" if gzipped else "")
            + ("" if keep_alive else "Connection: close\r\n")
            + "\r\n"
        ).encode("ascii")
        try:
            self.connection.sendall(head if head_only else head + body)
        except OSError:
            return False
        return keep_alive


class MetricsServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """One thread per connection, at most max_connections at once: a connection past the cap is closed as soon
    as it is accepted, so idle or slow clients hold at most max_connections threads and descriptors, however
    many connect (the reaper and the audit run on threads of their own and never wait for this server)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # 50 scrapers connecting at once must not overflow the listen backlog

    def __init__(
        self,
        address: tuple[str, int],
        render: Callable[[], bytes],
        max_connections: int = 64,
        idle_timeout: float = 10.0,
    ) -> None:
        self.renderer = CoalescingRenderer(render)
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused_total = 0
        self._refusal_logged = 0.0
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused_total += 1
            now = time.monotonic()
            if now - self._refusal_logged >= 60:
                self._refusal_logged = now
                log.warning(
                    "metrics: %d connections open, the most allowed: closing new ones (%d so far)",
                    self.max_connections, self.refused_total,
                )  # fmt: skip
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = host if isinstance(host, str) else host.decode()
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/metrics"


def serve(
    address: str,
    port: int,
    render: Callable[[], bytes],
    max_connections: int = 64,
    idle_timeout: float = 10.0,
) -> MetricsServer:
    """Serve render()'s text exposition on (address, port) from a background thread; port 0: any free port."""
    server = MetricsServer((address, port), render, max_connections, idle_timeout)
    thread = threading.Thread(target=server.serve_forever, name="fcsp-metrics", daemon=True)
    thread.start()
    return server
