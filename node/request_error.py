"""The one error type of the node's local operations: a stable code and a message for the user."""

from __future__ import annotations

from collections.abc import Callable

from olievlek.errors import OlievlekError


class RequestError(OlievlekError):
    """A local request cannot be carried out; the message is shown to the user (never an identifier)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.local_code = code
        self.template = ""
        self.params: dict[str, object] = {}

    @classmethod
    def later(cls, code: str, template: str, **params: object) -> RequestError:
        """Raised where the request's language is not known (inside a database write, which runs in the
        writer's own task): translated when the answer is written (``LocalApi``)."""
        error = cls(code, template.format(**params))
        error.template, error.params = template, params
        return error

    def in_language(self, gettext: Callable[[str], str]) -> str:
        return gettext(self.template).format(**self.params) if self.template else self.message
