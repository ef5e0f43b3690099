"""The one error type of the node's local operations: a stable code and a message for the user."""

from __future__ import annotations

from olievlek.errors import OlievlekError


class RequestError(OlievlekError):
    """A local request cannot be carried out; the message is shown to the user (never an identifier)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.local_code = code
