"""Errors raised by the translation layer."""

from __future__ import annotations


class TranslationError(Exception):
    """A request cannot be expressed in the target protocol without changing its
    meaning, or it is invalid in the caller's protocol.

    Callers turn it into a 400 in the *caller's* protocol (``invalid_request_error``).
    ``param`` names the offending field in dotted form (``messages.3.content.0``),
    or is ``None`` when no single field is to blame.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __repr__(self) -> str:
        return f"TranslationError({self.message!r}, param={self.param!r})"
