"""The machine's limit for the routing bench: a bare grpc.aio unary echo over olievlek's mTLS.

Usage:
    python bench/echo_baseline.py [--seconds S] [--concurrency N ...] [--payload BYTES]
    python bench/echo_baseline.py serve --ca ... --cert ... --key ... --ready-file F
    python bench/echo_baseline.py load --ca ... --cert ... --key ... --port P

The end-to-end routing bench pays for TLS, HTTP/2 framing, the grpc.aio event
loop and two processes sharing the cores; this script pays for exactly those
and nothing else (no proto, no policy, no store), so its figures are the
ceiling the router can be compared with. To be a fair ceiling it uses
olievlek's own dev CA certificates (ECDSA P-256), ``transport.server_credentials``
(client certificate required), ``transport.server_options()`` (the broker's
default) and ``transport.secure_channel`` (the node's channel options), and it
runs server and client in separate processes, as broker and node are.

Run directly, it measures concurrency 16, 64 and 128 and prints one line each.
The route bench imports ``measure_echo``. Loopback only; every phase has a
time limit and both subprocesses are always terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from olievlek import transport
from olievlek.config import write_ready_file
from olievlek.identity import OrgId, OrgIdentity, OrgKind
from olievlek.pki import CertificateAuthority
from olievlek.transport import TlsFiles

METHOD = "/olievlek.bench.Echo/Echo"
HOST = "127.0.0.1"
SERVER_NAME = "echo-baseline"
CLIENT_ORG = OrgIdentity(OrgKind.MUNICIPALITY, OrgId("echo-baseline"))
WARMUP_S = 1.0
# A sealed envelope of a typical alert is about this size on the wire.
DEFAULT_PAYLOAD = 1200
# One RPC on loopback takes milliseconds; a call still pending after this is a hang, not a data point.
RPC_TIMEOUT_S = 10.0
# Bounds on the phases the parent waits for, so a broken run fails instead of hanging the route bench.
READY_TIMEOUT_S = 30.0
LOAD_SLACK_S = 60.0
# An orphaned server (parent killed with SIGKILL) still exits by itself after this long.
SERVER_MAX_LIFETIME_S = 900.0


# -- PKI -----------------------------------------------------------------------
def provision(pki_dir: Path) -> tuple[TlsFiles, TlsFiles]:
    """Server and client TLS files from the CA in ``pki_dir``, creating the CA and certificates if missing.

    An existing PKI (the route bench's) is reused: the echo certificates are
    issued once under their own names and found again on later runs, so the
    handshake uses the same CA and key type as the broker's.
    """
    ca_pem = pki_dir / "ca.pem"
    ca = CertificateAuthority.load(pki_dir) if ca_pem.exists() else CertificateAuthority.init(pki_dir)
    server_dir = pki_dir / "servers" / SERVER_NAME
    if not (server_dir / "tls.pem").exists():
        # Same SANs as the broker's certificate, so the name check is the same.
        ca.issue_server(SERVER_NAME, ["localhost", HOST])
    client_dir = pki_dir / "orgs" / CLIENT_ORG.org_id
    if not (client_dir / "tls.pem").exists():
        ca.issue_org(CLIENT_ORG)
    server = TlsFiles(ca_pem, server_dir / "tls.pem", server_dir / "tls.key")
    client = TlsFiles(ca_pem, client_dir / "tls.pem", client_dir / "tls.key")
    return server, client


def _tls_args(files: TlsFiles) -> list[str]:
    return ["--ca", str(files.ca), "--cert", str(files.cert), "--key", str(files.key)]


# -- server process ------------------------------------------------------------
async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def serve(files: TlsFiles, ready_file: Path, max_lifetime_s: float) -> None:
    # None (de)serializers are grpc's identity for bytes: no proto, and no
    # Python call per message that the router would not pay either.
    handler = grpc.method_handlers_generic_handler(
        "olievlek.bench.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(_echo, request_deserializer=None, response_serializer=None)},
    )
    server = grpc.aio.server(options=transport.server_options())
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port(f"{HOST}:0", transport.server_credentials(files))
    if port == 0:
        raise SystemExit(f"cannot bind {HOST}:0")
    await server.start()
    write_ready_file(ready_file, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # The parent holds our stdin open; EOF means it is gone, so we do not outlive it.
    # Raw os.read, not sys.stdin: a daemon thread blocked in the buffered reader
    # holds its lock and makes interpreter shutdown abort.
    def watch_parent() -> None:
        while os.read(0, 4096):
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        await asyncio.wait_for(stop.wait(), max_lifetime_s)
    except TimeoutError:
        pass
    await server.stop(grace=None)


# -- load process --------------------------------------------------------------
async def load(files: TlsFiles, port: int, *, seconds: float, warmup: float, concurrency: int,
               payload: int) -> dict[str, float]:
    """Closed-loop load: ``concurrency`` callers on one channel, each sending as soon as its reply arrives.

    One channel, because a node holds one channel to the broker and multiplexes
    its calls on it. Only calls that start and finish inside the measuring
    window count, so warm-up and the drain at the end do not skew the figures.
    """
    body = os.urandom(payload)
    latencies: list[float] = []
    async with transport.secure_channel(f"{HOST}:{port}", files) as channel:
        # Handshake outside the clock: the router bench also measures an established channel.
        await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_S)
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        t_start = time.perf_counter() + warmup
        t_end = t_start + seconds

        async def caller() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= t_end:
                    return
                reply = await call(body, timeout=RPC_TIMEOUT_S)
                t1 = time.perf_counter()
                # A cheap check that this is an echo, not an empty answer that would flatter the figures.
                if len(reply) != payload:
                    raise RuntimeError(f"echo returned {len(reply)} bytes, sent {payload}")
                if t0 >= t_start and t1 <= t_end:
                    latencies.append(t1 - t0)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    if len(latencies) < 2:
        raise RuntimeError(f"only {len(latencies)} calls completed in the {seconds} s window")
    # 100-quantiles: index 49 is the median, 98 the 99th percentile.
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests_per_s": len(latencies) / seconds, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


# -- orchestration (parent process) --------------------------------------------
def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def measure_echo(workdir: Path, *, seconds: float = 5.0, concurrency: int = 64, payload: int = DEFAULT_PAYLOAD,
                 pki_dir: Path | None = None) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) of the bare echo; server and load each in their own process.

    ``pki_dir`` defaults to ``workdir / "pki"`` (created if missing); pass the
    route bench's PKI to share its CA. The figures cover ``seconds`` after a
    1 s warm-up on an already established channel.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    server_tls, client_tls = provision(pki_dir if pki_dir is not None else workdir / "pki")
    script = str(Path(__file__).resolve())
    ready = workdir / f"echo-{os.getpid()}-{time.monotonic_ns()}.port"
    server: subprocess.Popen[bytes] | None = None
    try:
        server = subprocess.Popen(
            [sys.executable, script, "serve", *_tls_args(server_tls), "--ready-file", str(ready)],
            stdin=subprocess.PIPE,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if server.poll() is not None:
                raise RuntimeError(f"echo server exited with {server.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"echo server not ready after {READY_TIMEOUT_S} s")
            time.sleep(0.02)
        port = int(ready.read_text())
        # run() kills the load process itself when the timeout passes.
        done = subprocess.run(
            [sys.executable, script, "load", *_tls_args(client_tls), "--port", str(port),
             "--seconds", str(seconds), "--warmup", str(WARMUP_S), "--concurrency", str(concurrency),
             "--payload", str(payload)],
            stdout=subprocess.PIPE, timeout=WARMUP_S + seconds + LOAD_SLACK_S, check=True,
        )
        result: dict[str, float] = {k: float(v) for k, v in json.loads(done.stdout).items()}
        return result
    finally:
        _stop(server)
        ready.unlink(missing_ok=True)


# -- command line --------------------------------------------------------------
def _add_tls(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ca", type=Path, required=True)
    p.add_argument("--cert", type=Path, required=True)
    p.add_argument("--key", type=Path, required=True)


def _tls(args: argparse.Namespace) -> TlsFiles:
    return TlsFiles(args.ca, args.cert, args.key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--payload", type=int, default=DEFAULT_PAYLOAD)
    sub = ap.add_subparsers(dest="command")
    p_serve = sub.add_parser("serve", help="run the echo server (internal)")
    _add_tls(p_serve)
    p_serve.add_argument("--ready-file", type=Path, required=True)
    p_serve.add_argument("--max-lifetime", type=float, default=SERVER_MAX_LIFETIME_S)
    p_load = sub.add_parser("load", help="run the client load and print JSON (internal)")
    _add_tls(p_load)
    p_load.add_argument("--port", type=int, required=True)
    p_load.add_argument("--seconds", type=float, default=5.0)
    p_load.add_argument("--warmup", type=float, default=WARMUP_S)
    p_load.add_argument("--concurrency", type=int, default=64)
    p_load.add_argument("--payload", type=int, default=DEFAULT_PAYLOAD)
    args = ap.parse_args()

    if args.command == "serve":
        asyncio.run(serve(_tls(args), args.ready_file, args.max_lifetime))
    elif args.command == "load":
        figures = asyncio.run(load(_tls(args), args.port, seconds=args.seconds, warmup=args.warmup,
                                   concurrency=args.concurrency, payload=args.payload))
        print(json.dumps(figures))
    else:
        print(f"bare grpc.aio unary echo over olievlek mTLS; payload {args.payload} B, {args.seconds} s after "
              f"{WARMUP_S} s warm-up; grpcio {grpc.__version__}; {os.cpu_count()} CPUs")
        with tempfile.TemporaryDirectory() as d:
            pki = Path(d) / "pki"
            for c in args.concurrency:
                r = measure_echo(Path(d), seconds=args.seconds, concurrency=c, payload=args.payload, pki_dir=pki)
                print(f"concurrency {c:4d}: {r['requests_per_s']:8.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
                      f"p99 {r['p99_ms']:7.2f} ms", flush=True)


if __name__ == "__main__":
    main()
