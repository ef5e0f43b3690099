"""The error tree of olievlek. Every error has a stable code.

::

    OlievlekError                  (code: ErrorCode)
    ├── ConfigError                a configuration or input file is wrong
    ├── IdentityError              a certificate does not carry exactly one olievlek identity
    ├── InvalidIdentifier          an identifier failed validation (never echoes it)
    ├── TransportError             the far side could not be reached
    ├── ShuttingDown               the service is draining and takes nothing new
    ├── LocalApiError              the node's local API answered with an error
    └── Refused                    an envelope or request was refused (carries a RefusalCode)
        ├── WireError              malformed, unknown field, bad enum, bound, non-canonical
        ├── VerificationError      signature, signer certificate, sender mismatch
        └── PolicyDenied           the rule bundle does not allow it

Messages never contain an identifier: callers pass a description of what is
wrong (which field, which rule, which certificate), not the offending value.
"""

from __future__ import annotations

from enum import StrEnum

from olievlek.v1 import broker_pb2


class ErrorCode(StrEnum):
    """Stable, machine-readable error codes (shown by the CLI, logged by services)."""

    CONFIG = "config"
    IDENTITY = "identity"
    INVALID_IDENTIFIER = "invalid_identifier"
    TRANSPORT = "transport"
    LOCAL_API = "local_api"
    SHUTTING_DOWN = "shutting_down"
    STORE_UNAVAILABLE = "store_unavailable"
    DECRYPTION = "decryption"
    REFUSED = "refused"


class OlievlekError(Exception):
    """Base of every error olievlek raises on purpose."""

    code: ErrorCode = ErrorCode.REFUSED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def diagnostics(self) -> str:
        """Text for a person at the CLI."""
        return f"[{self.code}] {self.message}"


class ConfigError(OlievlekError):
    """A configuration, bundle or input file is wrong."""

    code = ErrorCode.CONFIG


class IdentityError(OlievlekError):
    """A certificate does not establish exactly one olievlek identity."""

    code = ErrorCode.IDENTITY


class InvalidIdentifier(OlievlekError):
    """An identifier is not valid. The message says why, never what it was."""

    code = ErrorCode.INVALID_IDENTIFIER


class TransportError(OlievlekError):
    """The far side could not be reached, broke the connection, or asked us to come back later
    (``retry_after_s``, from a ``google.rpc.RetryInfo``: a rate limit)."""

    code = ErrorCode.TRANSPORT

    def __init__(self, message: str, *, retry_after_s: float | None = None, refusal_code: str = "") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.refusal_code = refusal_code  # the far side's stable refusal code, when it answered with one


class LocalApiError(OlievlekError):
    """The node answered a local request with an error."""

    code = ErrorCode.LOCAL_API

    def __init__(self, remote_code: str, message: str) -> None:
        super().__init__(message)
        self.remote_code = remote_code

    def diagnostics(self) -> str:
        return f"[{self.remote_code}] {self.message}"


class Refused(OlievlekError):
    """A refusal with a wire reason code, optionally naming the field and rule."""

    code = ErrorCode.REFUSED
    refusal_code: broker_pb2.RefusalCode.ValueType = broker_pb2.REFUSAL_CODE_MALFORMED

    def __init__(
        self,
        message: str,
        *,
        refusal_code: broker_pb2.RefusalCode.ValueType | None = None,
        field: str = "",
        rule_id: str = "",
    ) -> None:
        super().__init__(message)
        if refusal_code is not None:
            self.refusal_code = refusal_code
        self.field = field
        self.rule_id = rule_id

    @property
    def reason(self) -> str:
        """The refusal code's short name, e.g. ``unknown_field``."""
        name: str = broker_pb2.RefusalCode.Name(self.refusal_code)
        return name.removeprefix("REFUSAL_CODE_").lower()

    def to_proto(self) -> broker_pb2.Refusal:
        """The refusal as it goes back to the sender."""
        return broker_pb2.Refusal(
            code=self.refusal_code, detail=self.message, rule_id=self.rule_id, field=self.field
        )

    def diagnostics(self) -> str:
        return f"[{self.reason}] {self.message}"


class WireError(Refused):
    """The bytes do not follow the wire contract."""


class VerificationError(Refused):
    """A signature, signer certificate or sender identity does not check out."""

    refusal_code = broker_pb2.REFUSAL_CODE_BAD_SIGNATURE


class PolicyDenied(Refused):
    """The rule bundle does not allow the request (default deny)."""

    refusal_code = broker_pb2.REFUSAL_CODE_POLICY_DENIED


class ShuttingDown(OlievlekError):
    """The service is draining (SIGTERM): what was accepted is finished, nothing new is taken."""

    code = ErrorCode.SHUTTING_DOWN


class StoreUnavailable(OlievlekError):
    """The service's database cannot be reached now (PostgreSQL restarting, a failover): nothing was decided;
    the caller sends again, later or to another instance. Never an input's refusal."""

    code = ErrorCode.STORE_UNAVAILABLE


class ConnectionLost(StoreUnavailable):
    """The connection was lost (or refused) before a transaction's COMMIT: nothing of it was committed, and it
    may run again once the database is back."""
