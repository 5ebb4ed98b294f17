"""`OPS_TOKEN`: the probes and `/metrics` only for callers with `Authorization: Bearer <token>`.

Both say things about the instance an outsider should not read (load, spool size, pids); with
no OPS_TOKEN set they stay open, as load balancers and scrapers expect by default. Checked by
the guarded resources themselves, so a refused call is counted under its route.
"""

from __future__ import annotations

from typing import Any

import falcon

from web.auth import TokenCheck
from web.errors import JSONError


class OpsGuard:
    def __init__(self, tokens: tuple[str, ...] | None) -> None:
        self._check = TokenCheck(tokens, tenants=False)

    def check(self, req: Any) -> None:
        """Raise 401 unless OPS_TOKEN is unset or the caller sent one of its tokens."""
        if not self._check.enforced:
            return
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not self._check.accepts(token.strip()):
            raise JSONError(
                falcon.HTTP_401,
                "unauthorized",
                f"{req.path} needs Authorization: Bearer <OPS_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="mailroom-ops"'},
            )
