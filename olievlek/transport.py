"""gRPC glue shared by services: TLS credentials, channel options, peer identity.

One factory builds every TLS credential (the httpx ``create_ssl_context``
idea). grpcio for Python neither reports the negotiated TLS version nor lets
a server set a minimum version: TLS 1.3 is negotiated with every current
client (a test probes it with the stdlib ``ssl`` module), and 1.2 stays
accepted until grpcio exposes the setting.

Keys: a peer's certificate establishes an identity only under a key at least as strong as P-256, Ed25519
or RSA-3072 (``identity.from_certificate``); a caller presenting a weaker one ends ``UNAUTHENTICATED`` with
the refusal code ``WEAK_KEY``. A service's own certificate and its CA are held to the same floor when its
credentials are built, so a service never starts on a weak key.

This is the one module where ``grpc`` errors are translated; logic modules
never import grpc.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
from cryptography import x509
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from olievlek import logs
from olievlek.errors import ConfigError, IdentityError, ShuttingDown, StoreUnavailable
from olievlek.identity import OrgIdentity, WeakKey, require_strong_certificate
from olievlek.trust import RevocationUnavailable, TrustAnchor

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


def _strong(path: Path) -> bytes:
    """A PEM certificate file's bytes, once its key is known to be strong enough.

    Raises:
        ConfigError: the file cannot be read or does not parse.
        WeakKey: its (first) certificate's key is weaker than P-256, Ed25519 or RSA-3072.
    """
    try:
        data = path.read_bytes()
        cert = x509.load_pem_x509_certificate(data)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read certificate {path}: {exc}") from None
    try:
        require_strong_certificate(cert)
    except WeakKey as exc:
        raise WeakKey(f"{path}: {exc.message}") from None
    return data


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """mTLS server credentials: a client certificate from our CA is required.

    Raises:
        WeakKey: the server's own certificate or the CA's has a weak key.
    """
    _strong(files.ca)
    _strong(files.cert)
    return grpc.ssl_server_credentials(
        [(files.key.read_bytes(), files.cert.read_bytes())],
        root_certificates=files.ca.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """mTLS client credentials: trust only the federation CA.

    Raises:
        WeakKey: the client's own certificate or the CA's has a weak key.
    """
    _strong(files.ca)
    _strong(files.cert)
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
        WeakKey: a certificate whose key is weaker than P-256, Ed25519 or RSA-3072.
        IdentityError: no certificate, or one that is expired, revoked or ambiguous.
    """
    auth = context.auth_context()
    pem = next(iter(auth.get("x509_pem_cert") or []), None)
    if pem is None:
        raise IdentityError("no client certificate was presented")
    return trust.verify_tls_peer(pem)


# The stable refusal code of a call that ended in a gRPC status (read calls, authentication, rate limits).
REFUSAL_METADATA = "olievlek-refusal-code"
_STATUS_DETAILS = "grpc-status-details-bin"


class AuthRefusal(StrEnum):
    """The refusal codes of a call whose caller is not authenticated (status UNAUTHENTICATED)."""

    UNAUTHENTICATED = "UNAUTHENTICATED"  # no certificate, not the CA's, expired, revoked, ambiguous
    WEAK_KEY = "WEAK_KEY"  # the certificate's key is weaker than P-256, Ed25519 or RSA-3072


assert AuthRefusal.WEAK_KEY == WeakKey.REFUSAL


@dataclass(frozen=True, slots=True)
class PeerRefusal:
    """Why a caller is not authenticated: the refusal code and what to tell it (never a server path)."""

    code: AuthRefusal
    message: str


def peer_or_refusal(context: grpc.aio.ServicerContext[Any, Any], trust: TrustAnchor) -> OrgIdentity | PeerRefusal:
    """The caller's identity, or what to tell it (never a server path): its certificate is missing, not
    ours, expired, revoked, ambiguous or under a weak key, or revocation cannot be checked here."""
    try:
        return peer_identity(context, trust)
    except RevocationUnavailable as exc:
        log.error("auth.revocation_unavailable", reason=exc.message)
        return PeerRefusal(AuthRefusal.UNAUTHENTICATED, RevocationUnavailable.PUBLIC_MESSAGE)
    except WeakKey as exc:
        return PeerRefusal(AuthRefusal.WEAK_KEY, exc.message)
    except (IdentityError, ConfigError) as exc:
        return PeerRefusal(AuthRefusal.UNAUTHENTICATED, exc.message)


async def authenticate(context: grpc.aio.ServicerContext[Any, Any], trust: TrustAnchor) -> OrgIdentity:
    """The caller's identity, or the call ends UNAUTHENTICATED naming what is wrong with its certificate."""
    found = peer_or_refusal(context, trust)
    if isinstance(found, OrgIdentity):
        return found
    log.warning("auth.refused", reason=found.message, code=found.code)
    await abort(context, grpc.StatusCode.UNAUTHENTICATED, found.message, found.code)


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: grpc.StatusCode, message: str,
                refusal_code: str, retry_after_s: float | None = None) -> NoReturn:
    """End the call with ``status``, the stable refusal code in the trailing metadata and, when the caller
    should come back, a ``google.rpc.RetryInfo`` in the status details (as grpc-status-details-bin)."""
    trailers: list[tuple[str, str | bytes]] = [(REFUSAL_METADATA, refusal_code)]
    if retry_after_s is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromMilliseconds(max(1, int(retry_after_s * 1000)))
        detail = any_pb2.Any()
        detail.Pack(info)
        rich = status_pb2.Status(code=status.value[0], message=message, details=[detail])
        trailers.append((_STATUS_DETAILS, rich.SerializeToString()))
    await context.abort(status, message, trailing_metadata=tuple(trailers))
    raise AssertionError("unreachable: abort raises")


def refusal_code_of(exc: grpc.aio.AioRpcError) -> str:
    """The stable refusal code a server put in the trailing metadata ("" when none)."""
    for key, value in exc.trailing_metadata() or ():
        if key == REFUSAL_METADATA:
            return value if isinstance(value, str) else value.decode()
    return ""


def retry_after_of(exc: grpc.aio.AioRpcError) -> float | None:
    """The delay a server asked for (``google.rpc.RetryInfo``), in seconds; None when it asked for none."""
    for key, value in exc.trailing_metadata() or ():
        if key != _STATUS_DETAILS or not isinstance(value, bytes):
            continue
        rich = status_pb2.Status()
        try:
            rich.ParseFromString(value)
        except DecodeError:
            return None
        for detail in rich.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.ToMilliseconds()) / 1000
    return None


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class ErrorBoundary(grpc.aio.ServerInterceptor):
    """The one place where an exception a handler did not turn into an answer becomes a status: INTERNAL
    (or UNAVAILABLE while draining) with a refusal code in the trailing metadata and a log line - never the
    UNKNOWN that grpcio would send, and never the exception's text (it may name server paths)."""

    def __init__(self, service: str) -> None:
        self._service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method, de, ser = str(handler_call_details.method), handler.request_deserializer, handler.response_serializer
        # Coroutine handlers only: an async generator (the iterator form of streaming) keeps its own.
        if handler.unary_unary is not None and inspect.iscoroutinefunction(handler.unary_unary):
            return grpc.unary_unary_rpc_method_handler(self._guard(method, handler.unary_unary), de, ser)
        if handler.stream_stream is not None and inspect.iscoroutinefunction(handler.stream_stream):
            return grpc.stream_stream_rpc_method_handler(self._guard(method, handler.stream_stream), de, ser)
        return handler

    def _guard(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behaviour(request, context)
            except grpc.aio.AbortError:
                raise
            except ShuttingDown:
                await abort(context, grpc.StatusCode.UNAVAILABLE, "the service is shutting down; retry elsewhere "
                            "or later", "SHUTTING_DOWN", retry_after_s=1.0)
            except StoreUnavailable:
                log.warning("call.store_unavailable", service=self._service, method=method)
                await abort(context, grpc.StatusCode.UNAVAILABLE, f"{self._service}'s database is unavailable now "
                            "(a restart or failover); nothing was decided, send again", "STORE_UNAVAILABLE",
                            retry_after_s=1.0)
            except Exception as exc:
                log.exception("call.failed", service=self._service, method=method, error=type(exc).__name__)
                await abort(context, grpc.StatusCode.INTERNAL, f"internal error in {self._service}; its log has "
                            "the details", "INTERNAL")
        return guarded
