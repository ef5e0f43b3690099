"""Strict parsing of what crosses a node boundary.

An unknown field is a way to smuggle data past the schema, so unlike most
protobuf consumers we refuse one at any depth. Bounds come from the field
options in ``proto/olievlek/v1/options.proto``; every string on the wire is an
identifier-shaped token (no free text); every enum value must be declared and
not ``…_UNSPECIFIED``; and the bytes must be exactly what deterministic
serialization of the parsed message produces, so one message has one encoding
and a signature covers one meaning.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any, TypeVar

from google.protobuf import unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from olievlek.errors import WireError
from olievlek.identity import ID_PATTERN
from olievlek.v1 import broker_pb2, options_pb2

M = TypeVar("M", bound=Message)

DEFAULT_MAX_BYTES = 64
# Nine or more digits in a row (separators ignored) look like a national register number,
# a phone number or a date of birth: never a legitimate id, rule or contact token.
_NUMBER_LIKE = re.compile(r"\d{9,}")
_ID_SEPARATORS = re.compile(r"[._:-]")


def _opts(fd: Any) -> Any:
    return fd.GetOptions().Extensions


def _is_present(msg: Message, fd: Any) -> bool:
    if fd.has_presence:
        return msg.HasField(fd.name)
    value = getattr(msg, fd.name)
    return bool(value != fd.default_value)


def _check_scalar(fd: Any, value: Any, path: str) -> None:
    ext = _opts(fd)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        if value == 0 or value not in fd.enum_type.values_by_number:
            raise WireError(
                f"field {path}: value {int(value)} is not a declared {fd.enum_type.name}",
                refusal_code=broker_pb2.REFUSAL_CODE_INVALID_ENUM, field=path,
            )
    elif fd.type == FieldDescriptor.TYPE_STRING:
        limit = ext[options_pb2.max_bytes] or DEFAULT_MAX_BYTES
        if len(value.encode()) > limit:
            raise WireError(
                f"field {path}: longer than {limit} bytes",
                refusal_code=broker_pb2.REFUSAL_CODE_BOUND_EXCEEDED, field=path,
            )
        if not ID_PATTERN.fullmatch(value):
            raise WireError(
                f"field {path}: not an identifier token ([a-z0-9][a-z0-9._:-]*); free text is not allowed",
                refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field=path,
            )
        if _NUMBER_LIKE.search(_ID_SEPARATORS.sub("", value)):
            raise WireError(
                f"field {path}: a token may not hold 9 or more digits in a row (it could be an identifier)",
                refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field=path,
            )
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        exact = ext[options_pb2.exact_bytes]
        if exact and len(value) != exact:
            raise WireError(
                f"field {path}: must be exactly {exact} bytes, got {len(value)}",
                refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field=path,
            )
        limit = ext[options_pb2.max_bytes]
        if limit and len(value) > limit:
            raise WireError(
                f"field {path}: longer than {limit} bytes",
                refusal_code=broker_pb2.REFUSAL_CODE_BOUND_EXCEEDED, field=path,
            )
    elif fd.type != FieldDescriptor.TYPE_MESSAGE and fd.type != FieldDescriptor.TYPE_BOOL:
        lo, hi = ext[options_pb2.min_value], ext[options_pb2.max_value]
        if (lo and value < lo) or (hi and value > hi):
            raise WireError(
                f"field {path}: {value} is outside [{lo}, {hi or 'max'}]",
                refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field=path,
            )


def _check_bytes_items(ext: Any, values: list[bytes], path: str) -> None:
    """The length bounds of a repeated bytes field, checked over all items at once."""
    lengths = {len(v) for v in values}
    exact, limit = ext[options_pb2.exact_bytes], ext[options_pb2.max_bytes]
    if exact and lengths != {exact}:
        bad = next(n for n in sorted(lengths) if n != exact)
        raise WireError(f"field {path}: must be exactly {exact} bytes, got {bad}",
                        refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field=path)
    if limit and max(lengths) > limit:
        raise WireError(f"field {path}: longer than {limit} bytes",
                        refusal_code=broker_pb2.REFUSAL_CODE_BOUND_EXCEEDED, field=path)


def validate(msg: Message, path: str = "") -> None:
    """Check a parsed message against the wire contract, recursively.

    Raises:
        WireError: naming the field path at fault.
    """
    where = path or msg.DESCRIPTOR.name
    if len(unknown_fields.UnknownFieldSet(msg)):
        raise WireError(
            f"{where} carries unknown fields; only the declared schema may cross a boundary",
            refusal_code=broker_pb2.REFUSAL_CODE_UNKNOWN_FIELD, field=where,
        )
    for fd in msg.DESCRIPTOR.fields:
        name = f"{path}.{fd.name}" if path else fd.name
        ext = _opts(fd)
        if fd.is_repeated:
            values = list(getattr(msg, fd.name))
            limit = ext[options_pb2.max_items]
            if limit and len(values) > limit:
                raise WireError(
                    f"field {name}: {len(values)} items, at most {limit} allowed",
                    refusal_code=broker_pb2.REFUSAL_CODE_BOUND_EXCEEDED, field=name,
                )
            if (fd.type != FieldDescriptor.TYPE_MESSAGE and not ext[options_pb2.duplicates_allowed]
                    and len(set(values)) != len(values)):
                raise WireError(
                    f"field {name}: duplicate items",
                    refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field=name,
                )
            if fd.type == FieldDescriptor.TYPE_BYTES and values:
                _check_bytes_items(ext, values, name)  # one pass: a query holds up to 1,000 pseudonyms
                continue
            for i, value in enumerate(values):
                if fd.type == FieldDescriptor.TYPE_MESSAGE:
                    validate(value, f"{name}[{i}]")
                else:
                    _check_scalar(fd, value, name)
            continue
        if not _is_present(msg, fd):
            if ext[options_pb2.required]:
                raise WireError(
                    f"field {name} is required",
                    refusal_code=broker_pb2.REFUSAL_CODE_INVALID_FIELD, field=name,
                )
            continue
        value = getattr(msg, fd.name)
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            validate(value, name)
        else:
            _check_scalar(fd, value, name)


def parse_strict(cls: type[M], data: bytes) -> M:
    """Parse bytes into ``cls``, validate, and demand the canonical encoding.

    Raises:
        WireError: malformed, unknown field, bad enum, bound, or non-canonical.
    """
    msg = cls()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise WireError(
            f"{cls.DESCRIPTOR.name} is not a valid encoding ({exc})",
            refusal_code=broker_pb2.REFUSAL_CODE_MALFORMED, field=cls.DESCRIPTOR.name,
        ) from None
    validate(msg)
    if msg.SerializeToString(deterministic=True) != data:
        raise WireError(
            f"{cls.DESCRIPTOR.name} is not canonically encoded (it does not re-serialize to the same bytes)",
            refusal_code=broker_pb2.REFUSAL_CODE_NON_CANONICAL, field=cls.DESCRIPTOR.name,
        )
    return msg


def new_token() -> str:
    """A random idempotency key: 128 bits in lower-case base32 (no long digit runs)."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def encode(msg: Message) -> bytes:
    """The canonical encoding we sign and send."""
    return msg.SerializeToString(deterministic=True)


def present_fields(msg: Message, prefix: str = "") -> list[str]:
    """Dotted paths of the leaf fields present in ``msg``.

    Presence: a set optional scalar or message, a non-default scalar or
    enum, a non-empty repeated field. Sub-messages contribute their leaves.
    """
    out: list[str] = []
    for fd, value in msg.ListFields():
        name = f"{prefix}.{fd.name}" if prefix else fd.name
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated:
            out.extend(present_fields(value, name) or [name])
        else:
            out.append(name)
    return out
