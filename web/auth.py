"""Checking a collection's token against INGEST_TOKENS without leaking it through timing."""

from __future__ import annotations

import hmac


class TokenCheck:
    """Accepts a token that equals one of the configured ones; with none configured, any."""

    def __init__(self, tokens: tuple[str, ...] | None) -> None:
        self._tokens = [t.encode() for t in tokens] if tokens else None

    @property
    def enforced(self) -> bool:
        return self._tokens is not None

    def accepts(self, token: str) -> bool:
        if self._tokens is None:
            return True
        given = token.encode("utf-8", "surrogatepass")
        matched = False
        for expected in self._tokens:  # every one is compared: no early exit to time
            matched |= hmac.compare_digest(given, expected)
        return matched
