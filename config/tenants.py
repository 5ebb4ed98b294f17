"""Tenants, as `INGEST_TOKENS` names them: `acme:token1,acme:token2,globex:token3,plain`.

An entry `name:token` gives the token to tenant `name` (lower-case letters, digits, `_` and
`-`, starting with a letter, at most 32 characters); any other entry is a plain token of no
tenant, as before tenants existed. A tenant may have several tokens, so a token is rotated
by adding the new one, moving clients, then removing the old one: no restart of work in flight.
"""

from __future__ import annotations

import re

TENANT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def split_entry(entry: str) -> tuple[str | None, str]:
    """(tenant or None, token) of one INGEST_TOKENS entry."""
    name, colon, token = entry.partition(":")
    if colon and token and TENANT_NAME.fullmatch(name):
        return name, token
    return None, entry


def tenants_of(entries: tuple[str, ...] | None) -> tuple[str, ...]:
    """The tenants named, each once, in the order first named."""
    names: list[str] = []
    for entry in entries or ():
        tenant, _ = split_entry(entry)
        if tenant is not None and tenant not in names:
            names.append(tenant)
    return tuple(names)
