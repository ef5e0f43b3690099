"""Readiness for a load balancer, and what this instance sees of its database.

Plain HTTP ``GET /ready`` (on ``ready_listen``) answers 200 while this instance serves and its database answered
the last probe as a read-write primary, 503 otherwise - HAProxy's ``option httpchk GET /ready`` takes an instance
out before its calls fail. (gRPC health says SERVING for the process; this says whether it can decide anything.)
A probe every second also sets the gauges: database up, primary, the server seen (a change of server is a
failover), replication lag as the primary reports it, and the transactions run again after a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from olievlek import logs
from olievlek.groupcommit import GroupCommitter
from olievlek.metrics import Metrics

from .storage.interface import Instances

log = logs.get("broker.readiness")
PROBE_INTERVAL_S = 1.0


class Readiness:
    def __init__(self, store: Instances, metrics: Metrics, committer: GroupCommitter[Any, Any, Any]) -> None:
        self._store, self._metrics, self._committer = store, metrics, committer
        self.serving = False  # set once the gRPC server serves; cleared when it drains
        self.database_ok = False
        self._server_seen: tuple[str, int] | None = None
        self._retries_counted = 0
        self._http: ThreadingHTTPServer | None = None

    @property
    def ready(self) -> bool:
        return self.serving and self.database_ok

    async def probe(self) -> None:
        try:
            primary = await self._probe_database()
        except Exception as exc:  # unreachable, timed out: not ready, and say so once per change
            if self.database_ok:
                log.warning("readiness.database_unavailable", error=type(exc).__name__)
            self.database_ok, primary = False, False
        else:
            if not self.database_ok and primary:
                log.info("readiness.database_available")
            self.database_ok = primary
        self._metrics.database_up.set(1 if self.database_ok else 0)
        self._metrics.database_primary.set(1 if primary else 0)
        retries = self._committer.reconnects
        if retries > self._retries_counted:
            self._metrics.commit_retries.inc(retries - self._retries_counted)
            self._retries_counted = retries

    async def _probe_database(self) -> bool:
        state = await self._store.database_state()
        if self._server_seen is not None and state.server != self._server_seen and state.server[1]:
            self._metrics.database_failovers.inc()
            log.warning("readiness.database_server_changed", server=f"{state.server[0]}:{state.server[1]}")
        self._server_seen = state.server
        if state.replication_lag_s is not None:  # visible to a monitoring role only
            self._metrics.replication_lag.set(state.replication_lag_s)
        return state.primary

    async def run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(PROBE_INTERVAL_S)

    def serve_http(self, listen: str) -> int:
        """Serve ``GET /ready`` on ``host:port`` (port 0 picks one) in a thread; returns the bound port."""
        readiness = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                if self.path != "/ready":
                    self.send_error(404)
                    return
                body = b"ready\n" if readiness.ready else b"not ready\n"
                self.send_response(200 if readiness.ready else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # http.server's signature; quiet
                return None

        host, _, port = listen.rpartition(":")
        self._http = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        threading.Thread(target=self._http.serve_forever, name="olievlek-ready", daemon=True).start()
        return int(self._http.server_address[1])

    def close(self) -> None:
        if self._http is not None:
            with contextlib.suppress(OSError):
                self._http.shutdown()
                self._http.server_close()
