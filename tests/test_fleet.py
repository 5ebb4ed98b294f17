"""A fleet: three instances of `mailroom serve`, two granian workers each, one tenant limit.

With RATE_STORE on a real Redis, TENANT_RATE holds for all six processes together: a tenant
flooding every instance gets one limit's worth (within the documented error: a block per
process), another tenant is untouched. Redis stopped mid-flood: every request is still answered
at once, each box falls back to its own limit, and the fleet limit returns when Redis does,
without a restart. Every payload acknowledged lands. Bounded: about 20 s of floods.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
import requests

from bench.s3sink import S3Sink
from rates.fleet import block_for
from tests.redis_server import RedisServer
from tests.support import ServiceProcess, free_port, sink_env

RATE, BURST = 50, 100
INSTANCES, WORKERS = 3, 2
PROCESSES = INSTANCES * WORKERS
BLOCK = block_for(RATE, BURST)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path).start()
    yield server
    server.stop()


class Flood:
    """Clients posting one-payload collections of one tenant, round robin over the instances,
    until told to stop (or 30 s, whichever first), each waiting `pause` seconds after every
    answer; it counts what each answer said."""

    def __init__(
        self, urls: list[str], token: str, tenant: str, clients: int, pause: float = 0.0
    ) -> None:
        self.urls, self.token, self.tenant = urls, token, tenant
        self.clients, self.pause = clients, pause
        self.accepted: list[int] = []  # the `n` of each payload answered 202
        self.statuses: dict[int, int] = {}
        self.slowest = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0

    def run_for(self, seconds: float) -> float:
        """Flood for `seconds`; return how long the first to the last answer took."""
        self._stop.clear()
        started = time.monotonic()
        with ThreadPoolExecutor(self.clients) as pool:
            for client in range(self.clients):
                pool.submit(self._client, client, started + seconds)
        return time.monotonic() - started

    def _client(self, client: int, until: float) -> None:
        with requests.Session() as http:
            while time.monotonic() < min(until, self._deadline()):
                with self._lock:
                    n = self._sent
                    self._sent += 1
                url = self.urls[n % len(self.urls)]
                body = {"version": "1", "token": self.token, "data": [{"t": self.tenant, "n": n}]}
                sent = time.monotonic()
                answer = http.post(url + "/payloads", json=body, timeout=10)
                took = time.monotonic() - sent
                with self._lock:
                    self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                    self.slowest = max(self.slowest, took)
                    if answer.status_code == 202:
                        self.accepted.append(n)
                if answer.status_code == 429:
                    time.sleep(0.005)
                time.sleep(self.pause)

    def _deadline(self) -> float:
        return time.monotonic() + 30

    def take_counts(self) -> tuple[int, dict[int, int]]:
        """The 202s and every status since the last call."""
        with self._lock:
            statuses, self.statuses = self.statuses, {}
        return statuses.get(202, 0), statuses


def test_tenant_limits_hold_for_the_fleet_and_follow_redis_down_and_back(
    sink: S3Sink, tmp_path: Path, redis: RedisServer
) -> None:
    services = [
        ServiceProcess(
            sink_env(
                sink,
                tmp_path / f"spool-{i}",
                SERVER="granian",
                WEB_CONCURRENCY=str(WORKERS),
                MAX_WORKERS="4",
                INGEST_TOKENS="acme:k-acme,beta:k-beta",
                TENANT_RATE=str(RATE),
                TENANT_BURST=str(BURST),
                MAX_PAYLOADS_PER_REQUEST="10",
                RATE_STORE=redis.url,
                RATE_STORE_TIMEOUT_MS="50",
                LOG_LEVEL="WARNING",
            )
        )
        for i in range(INSTANCES)
    ]
    try:
        for service in services:
            service.start()
        urls = [service.url for service in services]
        acme = Flood(urls, "k-acme", "acme", clients=12)
        # beta posts at most 20 a second, well under its own limit of 50 (unpaced, one client
        # posted ~100 a second on a quiet machine and met its own limit).
        beta = Flood(urls, "k-beta", "beta", clients=1, pause=0.05)

        # 1. Redis up: one limit for the six processes; beta, posting calmly, untouched.
        calm = threading.Thread(target=beta.run_for, args=(4.0,))
        calm.start()
        took = acme.run_for(4.0)
        calm.join()
        accepted, statuses = acme.take_counts()
        allowed = BURST + RATE * took
        assert allowed - PROCESSES * BLOCK <= accepted <= allowed + PROCESSES * BLOCK, (
            accepted,
            took,
            statuses,
        )
        assert statuses.get(429, 0) > accepted  # the flood was far over the limit
        assert set(statuses) <= {202, 429}, statuses
        beta_accepted, beta_statuses = beta.take_counts()
        assert beta_statuses == {202: beta_accepted} and beta_accepted > 0, beta_statuses

        # 2. Redis gone mid-flood: answered at once, each box holds its own limit (open).
        redis.stop()
        took = acme.run_for(2.0)
        accepted, statuses = acme.take_counts()
        assert set(statuses) <= {202, 429}, statuses  # never a 5xx, never a hang
        assert acme.slowest < 2.0
        assert 0 < accepted <= INSTANCES * (BURST + RATE * took) + PROCESSES * BLOCK, accepted
        for service in services:
            report = health(service)["rates"]
            assert report["store"] == "redis" and report["redis"]["failing"] == "open", report

        # 3. Redis back: the fleet limit returns without a restart, once each process has
        # tried it again (a backoff of at most 10 s, tried by a request).
        redis.start()
        for _ in range(15):
            acme.run_for(1.0)
            if not any(failing(service) for service in services for _ in range(2 * WORKERS)):
                break
        else:
            raise AssertionError("the fleet limit did not come back within 15 s of Redis")
        acme.take_counts()
        took = acme.run_for(3.0)
        accepted, statuses = acme.take_counts()
        # One limit: at most a full bucket and the rate (per box, three would let ~3x in).
        assert accepted <= BURST + RATE * took + PROCESSES * BLOCK, (accepted, took, statuses)
        assert statuses.get(429, 0) > accepted
    finally:
        codes = [service.stop() for service in services if service.proc is not None]
    assert all(code == 0 for code, _ in codes), [log for _, log in codes]
    # Nothing acknowledged is lost, whatever Redis did.
    landed = [orjson.loads(obj.body) for obj in sink.objects.values()]
    assert sorted(d["n"] for d in landed if d["t"] == "acme") == sorted(acme.accepted)
    assert sorted(d["n"] for d in landed if d["t"] == "beta") == sorted(beta.accepted)


def health(service: ServiceProcess) -> dict:
    return requests.get(service.url + "/healthz", timeout=5).json()


def failing(service: ServiceProcess) -> bool:
    """Whether the worker that answers this fresh connection counts Redis as failing (its
    report is at most a second old)."""
    report = requests.get(service.url + "/healthz", timeout=5).json()["rates"]
    return report["redis"]["failing"] is not None


def test_without_a_rate_store_the_workers_of_one_instance_share_one_limit(
    sink: S3Sink, tmp_path: Path
) -> None:
    """Measured before: one instance of two workers let a tenant limited to 400 payloads in
    6 s through 799 times (each worker kept its own bucket)."""
    service = ServiceProcess(
        sink_env(
            sink,
            tmp_path / "spool",
            SERVER="granian",
            WEB_CONCURRENCY=str(WORKERS),
            INGEST_TOKENS="acme:k-acme",
            TENANT_RATE=str(RATE),
            TENANT_BURST=str(BURST),
            MAX_PAYLOADS_PER_REQUEST="10",
            LOG_LEVEL="WARNING",
        )
    ).start()
    try:
        acme = Flood([service.url], "k-acme", "acme", clients=8)
        took = acme.run_for(3.0)
        accepted, statuses = acme.take_counts()
        report = health(service)["rates"]
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert report["store"] == "box", report
    # One bucket for the box: exactly one limit (the box counts every decision, no blocks).
    assert BURST + RATE * took * 0.9 <= accepted <= BURST + RATE * took + 1, (accepted, statuses)
    landed = [orjson.loads(obj.body) for obj in sink.objects.values()]
    assert sorted(d["n"] for d in landed) == sorted(acme.accepted)
