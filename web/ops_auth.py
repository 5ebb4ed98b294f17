"""`OPS_TOKEN`: the probes and `/metrics` only for callers with `Authorization: Bearer <token>`.

Both say things about the instance an outsider should not read (load, spool size, pids); with
no OPS_TOKEN set they stay open, as load balancers and scrapers expect by default.
"""

from __future__ import annotations

import falcon

from web.auth import TokenCheck
from web.errors import JSONError

GUARDED = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})


class OpsTokenMiddleware:
    def __init__(self, tokens: tuple[str, ...] | None) -> None:
        self._check = TokenCheck(tokens, tenants=False)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict
    ) -> None:
        # After routing, so a refused call is counted under its route, not as "unmatched".
        if not self._check.enforced or req.uri_template not in GUARDED:
            return
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not self._check.accepts(token.strip()):
            raise JSONError(
                falcon.HTTP_401,
                "unauthorized",
                f"{req.path} needs Authorization: Bearer <OPS_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="mailroom-ops"'},
            )
