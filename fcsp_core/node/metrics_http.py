"""The metrics endpoint: GET /metrics in Prometheus' text format, from a private CollectorRegistry.

Rendering is coalesced: scrapes that arrive while a rendering runs wait for the next one, which starts after
they arrived, and share its output. So every scrape sees a snapshot taken after it asked, and N concurrent
scrapers cost about one rendering instead of N (50 scrapers on 2 cores stay fast; each rendering reads one
snapshot)."""

from __future__ import annotations

import gzip
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

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


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus and scrapers reuse their connections

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                rendering = self.server.renderer.get()
            except Exception as exc:  # noqa: BLE001 - a scrape must get an answer, the daemon must go on
                log.exception("rendering the metrics failed")
                self._send(
                    500, b"fcsp node: rendering the metrics failed: " + str(exc).encode(), "text/plain"
                )
                return
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                self._send(200, rendering.gzipped(), CONTENT_TYPE_LATEST, gzipped=True)
            else:
                self._send(200, rendering.body, CONTENT_TYPE_LATEST)
        elif path == "/":
            page = b"<html><body><h1>fcsp node</h1><p><a href='/metrics'>/metrics</a></p></body></html>\n"
            self._send(200, page, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found: try /metrics\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str, gzipped: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's signature)
        return  # one line per scrape would drown the reaper's log


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        self.renderer = CoalescingRenderer(lambda: generate_latest(registry))
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = host if isinstance(host, str) else host.decode()
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/metrics"


def serve(address: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    """Start serving registry on (address, port) in a background thread; port 0 takes any free port."""
    server = MetricsServer((address, port), registry)
    thread = threading.Thread(target=server.serve_forever, name="fcsp-metrics", daemon=True)
    thread.start()
    return server
