"""Checking a client's token against INGEST_TOKENS without leaking it through timing."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from config.tenants import split_entry


@dataclass(frozen=True, slots=True)
class Client:
    """Who a token belongs to: a tenant, or None for a plain token (or no INGEST_TOKENS).

    `scope`: whose Idempotency-Keys these are: the tenant (all its tokens, so a rotation
    keeps them), or one plain token (a digest of it, never the token itself)."""

    tenant: str | None
    scope: str = ""


ANYONE = Client(None)


class TokenCheck:
    """Knows the configured tokens; with none configured, accepts any token as no tenant."""

    def __init__(self, entries: tuple[str, ...] | None, *, tenants: bool = True) -> None:
        """`tenants`: read `name:token` entries as a tenant's token (INGEST_TOKENS, not
        OPS_TOKEN, whose entries are plain tokens, colons and all)."""
        split = split_entry if tenants else (lambda entry: (None, entry))
        self._tokens = (
            [(token.encode(), _client(tenant, token)) for tenant, token in map(split, entries)]
            if entries
            else None
        )

    @property
    def enforced(self) -> bool:
        return self._tokens is not None

    def identify(self, token: str) -> Client | None:
        """The client this token belongs to, or None if it is not accepted."""
        if self._tokens is None:
            return ANYONE
        given = token.encode("utf-8", "surrogatepass")
        found = None
        for expected, client in self._tokens:  # every one is compared: no early exit to time
            if hmac.compare_digest(given, expected) and found is None:
                found = client
        return found

    def accepts(self, token: str) -> bool:
        return self.identify(token) is not None


def _client(tenant: str | None, token: str) -> Client:
    if tenant is not None:
        return Client(tenant, f"tenant:{tenant}")
    return Client(None, "token:" + hashlib.sha256(token.encode()).hexdigest()[:16])
