"""The probes: `/healthz`, `/livez`, `/readyz`, each guarded by OPS_TOKEN when it is set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from web.ops_auth import OpsGuard

Probe = Callable[[], dict[str, Any]]


class HealthResource:
    """200 while serving; 503 when draining, when the supervision tree gave up, or when no
    uploader is alive. A spool that cannot be written is reported (`"status": "degraded"`,
    `spool.writable: false`) but still 200: uploads to S3 go on."""

    def __init__(self, probe: Probe, guard: OpsGuard) -> None:
        self._probe = probe
        self._guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._guard.check(req)
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


class LivenessResource:
    """`GET /livez`: is the process working? 200 while it serves or drains; 503 only once the
    supervision tree gave up (the process is about to exit: restart it). For an orchestrator's
    liveness probe: a draining process must not be killed for being busy."""

    def __init__(self, probe: Probe, guard: OpsGuard) -> None:
        self._probe = probe
        self._guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._guard.check(req)
        report = self._probe()
        alive = not report.get("gave_up")
        resp.status = falcon.HTTP_200 if alive else falcon.HTTP_503
        resp.media = {"alive": alive, "gave_up": report.get("gave_up")}


class ReadinessResource:
    """`GET /readyz`: should traffic come here? 200 only when not draining, the tree has not
    given up, an uploader is alive, S3 takes writes and the spool can be written; otherwise
    503 with every reason, and what waits in the spool (it grows while S3 is unreachable)."""

    def __init__(self, probe: Probe, guard: OpsGuard) -> None:
        self._probe = probe
        self._guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._guard.check(req)
        report = self._probe()
        reasons = []
        if report.get("draining"):
            reasons.append("draining: shutting down")
        if report.get("gave_up"):
            reasons.append(f"the supervision tree gave up: {report['gave_up']}")
        if report.get("slots_alive", 1) == 0:
            reasons.append("no uploader is alive")
        s3 = report.get("s3", {})
        if s3.get("reachable") is False:
            reasons.append(f"S3 does not take writes: {s3.get('error')}")
        spool = report.get("spool", {})
        if spool.get("writable") is False:
            reasons.append(f"the spool cannot be written: {spool.get('error')}")
        resp.status = falcon.HTTP_503 if reasons else falcon.HTTP_200
        resp.media = {
            "ready": not reasons,
            "reasons": reasons,
            "spool": {k: spool.get(k) for k in ("files", "bytes", "oldest_age_seconds")},
        }
