"""gRPC glue shared by services: TLS credentials, channel options, peer identity.

One factory builds every TLS credential (the httpx ``create_ssl_context``
idea). grpcio for Python neither reports the negotiated TLS version nor lets
a server set a minimum version: TLS 1.3 is negotiated with every current
client (a test probes it with the stdlib ``ssl`` module), and 1.2 stays
accepted until grpcio exposes the setting.

This is the one module where ``grpc`` errors are translated; logic modules
never import grpc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from olievlek import logs
from olievlek.errors import ConfigError, IdentityError
from olievlek.identity import OrgIdentity
from olievlek.trust import TrustAnchor

log = logs.get("transport")

# Keepalive on both sides: a partition sends no reset, so only pings find a dead
# connection. A node notices a dead broker stream within keepalive + timeout
# (~25 s in production); the broker must permit pings at least that often, or it
# answers them with GOAWAY too_many_pings. Tests shorten both (about 2 s).
KEEPALIVE_S = 15.0
KEEPALIVE_TIMEOUT_S = 10.0
MIN_PING_INTERVAL_S = 5.0


def server_options(min_ping_interval_s: float = MIN_PING_INTERVAL_S) -> list[tuple[str, Any]]:
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.ping_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", int(min_ping_interval_s * 1000)),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", int(min_ping_interval_s * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", 1 << 24),
    ]


def client_options(keepalive_s: float = KEEPALIVE_S, timeout_s: float = KEEPALIVE_TIMEOUT_S) -> list[tuple[str, Any]]:
    return [
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Without this, a client that sends no data may ping only every 5 minutes (gRPC core's
        # default), and a partition of an idle stream would go unnoticed that long.
        ("grpc.http2.min_time_between_pings_ms", int(keepalive_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", int(keepalive_s * 1000)),
        # gRPC core 1.85 enforces an unanswered ping only through this (keepalive_timeout_ms alone
        # relies on the kernel's TCP_USER_TIMEOUT, which never fires when a middlebox still ACKs).
        ("grpc.http2.ping_timeout_ms", int(timeout_s * 1000)),
        ("grpc.max_receive_message_length", 1 << 24),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]


SERVER_OPTIONS = server_options()


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths to the PEM files a TLS endpoint needs."""

    ca: Path
    cert: Path
    key: Path


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """mTLS server credentials: a client certificate from our CA is required."""
    return grpc.ssl_server_credentials(
        [(files.key.read_bytes(), files.cert.read_bytes())],
        root_certificates=files.ca.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """mTLS client credentials: trust only the federation CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.key.read_bytes(),
        certificate_chain=files.cert.read_bytes(),
    )


def secure_channel(target: str, files: TlsFiles, keepalive_s: float = KEEPALIVE_S,
                   keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S) -> grpc.aio.Channel:
    options = client_options(keepalive_s, keepalive_timeout_s)
    return grpc.aio.secure_channel(target, channel_credentials(files), options=options)


def peer_identity(context: grpc.aio.ServicerContext[Any, Any], trust: TrustAnchor) -> OrgIdentity:
    """The caller's identity from its verified TLS client certificate.

    Raises:
        IdentityError: no certificate, or one that is expired, revoked or ambiguous.
    """
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise IdentityError("no client certificate was presented")
    return trust.verify_tls_peer(pems[0])


async def authenticate(context: grpc.aio.ServicerContext[Any, Any], trust: TrustAnchor) -> OrgIdentity:
    """The caller's identity, or the call ends UNAUTHENTICATED naming what is wrong with its certificate."""
    try:
        return peer_identity(context, trust)
    except (IdentityError, ConfigError) as exc:
        log.warning("auth.refused", reason=exc.message)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
        raise AssertionError("unreachable: abort raises") from exc
