"""`GET /healthz`: is this instance worth sending work to, and what does it hold?"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon


class HealthResource:
    """200 while serving; 503 when draining, when the supervision tree gave up, or when no
    uploader is alive. A spool that cannot be written is reported (`"status": "degraded"`,
    `spool.writable: false`) but still 200: uploads to S3 go on."""

    def __init__(self, probe: Callable[[], dict[str, Any]]) -> None:
        self._probe = probe

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = self._probe()
        healthy = (
            not report.get("draining")
            and not report.get("gave_up")
            and report.get("slots_alive", 0) > 0
        )
        degraded = report.get("spool", {}).get("writable") is False
        report["status"] = ("degraded" if degraded else "ok") if healthy else "unavailable"
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.media = report
