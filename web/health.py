"""`GET /healthz`: is this instance worth sending work to, and what does it hold?"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon


class HealthResource:
    """200 while serving with at least one uploader slot alive; 503 when draining or none is."""

    def __init__(self, probe: Callable[[], dict[str, Any]]) -> None:
        self._probe = probe

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = self._probe()
        healthy = not report.get("draining") and report.get("slots_alive", 0) > 0
        report["status"] = "ok" if healthy else "unavailable"
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.media = report
