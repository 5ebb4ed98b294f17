"""rates/: tenant limits per process, per box and per fleet, against a real Redis server.

The arithmetic is checked on a fake clock; the shared box file with real processes, forked
and spawned; the fleet with three instances of two processes each, every instance with its own
box file, all on one real redis-server; and the failures by making them happen: the server
stopped mid-flood, paused (it accepts connections and answers nothing), then started again.
Every flood is bounded in count and time, and the assertions are on counts: what one limit
allows over the flood's duration, within the documented error.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from config import Settings
from config.reader import ConfigError
from rates import check_rate_store, gcra, limiter_for, prepare_box
from rates.box import ENV, BoxFileError, BoxRates, make_box_file
from rates.fleet import CLOSED_WAIT, FleetRates, block_for
from rates.limiter import NoLimit
from rates.local import LocalRates
from rates.redis_store import RedisBuckets, connect
from tests import rate_flood
from tests.redis_server import RedisServer
from tests.support import free_port, wait_for

RATE, BURST = 50.0, 100  # the operator: one limit over 6 s allows 400 payloads
TENANTS = "acme:tokA,beta:tokB,plain-token"


def env_for(rate: float = RATE, burst: int = BURST, **extra: str) -> dict[str, str]:
    return {
        "TENANT_RATE": f"{rate:g}",
        "TENANT_BURST": str(burst),
        "MAX_PAYLOADS_PER_REQUEST": "10",
        "INGEST_TOKENS": TENANTS,
        **extra,
    }


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, stopped afterwards."""
    server = RedisServer(free_port(), tmp_path).start()
    yield server
    server.stop()


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- the arithmetic, on a fake clock --------------------------------------------------------


def test_gcra_takes_the_burst_then_the_rate() -> None:
    clock = FakeClock()
    rates = LocalRates(10.0, 20, clock)
    assert [rates.take("acme", 5) for _ in range(4)] == [0.0] * 4
    assert rates.take("acme", 1) == pytest.approx(0.1)  # empty: one payload takes 1/rate
    assert rates.take("beta", 20) == 0.0  # another tenant has its own bucket
    clock.now += 0.5
    assert rates.take("acme", 5) == 0.0  # 0.5 s at 10/s brought 5
    assert rates.take("acme", 5) == pytest.approx(0.5)
    rates.give_back("acme", 5)
    assert rates.take("acme", 5) == 0.0
    clock.now += 3600
    assert rates.take("acme", 21) == pytest.approx(0.1)  # over the burst: never all at once
    rates.give_back("acme", 100)
    assert gcra.level(0.0, clock.now, 10.0, 20) == 20  # a zeroed slot is a full bucket


class TokenBucket:
    """The token bucket mailroom used before `rates` (web.limits.TenantRates), kept here as the
    oracle GCRA must agree with."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self._burst, self._clock = rate, float(burst), clock
        self._buckets: dict[str | None, tuple[float, float]] = {}  # tenant: (level, when)

    def give_back(self, tenant: str | None, payloads: int) -> None:
        level, when = self._buckets.get(tenant, (self._burst, self._clock()))
        self._buckets[tenant] = (min(self._burst, level + payloads), when)

    def take(self, tenant: str | None, payloads: int) -> float:
        now = self._clock()
        level, when = self._buckets.get(tenant, (self._burst, now))
        level = min(self._burst, level + (now - when) * self.rate)
        if level >= payloads:
            self._buckets[tenant] = (level - payloads, now)
            return 0.0
        self._buckets[tenant] = (level, now)
        return (payloads - level) / self.rate


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=3, allow_nan=False),
            st.booleans(),
            st.integers(min_value=1, max_value=30),
        ),
        max_size=60,
    )
)
def test_gcra_decides_as_the_token_bucket_it_replaces(steps: list[tuple[float, bool, int]]) -> None:
    """The same answers as the token bucket it replaced, so the limit clients met is unchanged."""
    clock = FakeClock()
    old, new = TokenBucket(7.0, 25, clock), LocalRates(7.0, 25, clock)
    for elapsed, taking, payloads in steps:
        clock.now += elapsed
        if taking:
            assert new.take("t", payloads) == pytest.approx(old.take("t", payloads), abs=1e-6)
        else:
            old.give_back("t", payloads)
            new.give_back("t", payloads)


# --- settings --------------------------------------------------------------------------------


def test_rate_store_settings() -> None:
    settings_ = Settings.from_env(
        {"RATE_STORE": "rediss://:s3cret@cache.example:6380/2", "RATE_STORE_FAILURE": "closed"}
    )
    assert settings_.rate_store == "rediss://:s3cret@cache.example:6380/2"
    assert settings_.rate_store_failure == "closed"
    assert settings_.rate_store_timeout_ms == 50
    assert settings_.describe()["rate_store"] == "rediss://:***@cache.example:6380/2"
    assert Settings.from_env({}).rate_store is None
    tls_options = "rediss://cache:6380/0?ssl_cert_reqs=none"
    assert Settings.from_env({"RATE_STORE": tls_options}).rate_store == tls_options
    for bad in (
        "http://cache:6379",
        "redis://",
        "redis://cache:99999",
        "redis://cache/x",
        "redis://cache:6379/0?socket_timeout=5",  # would undo RATE_STORE_TIMEOUT_MS
    ):
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({"RATE_STORE": bad.replace("cache", "s3cret@cache")})
        assert "RATE_STORE is not valid" in str(refused.value)
        assert "s3cret" not in str(refused.value)  # a URL may hold a password: never echoed
    with pytest.raises(ConfigError, match="RATE_STORE_FAILURE='ajar' is not valid"):
        Settings.from_env({"RATE_STORE_FAILURE": "ajar"})


def test_no_rate_means_no_limiter_and_no_redis() -> None:
    closed_port = f"redis://127.0.0.1:{free_port()}/0"
    settings_ = Settings.from_env({"RATE_STORE": closed_port})  # TENANT_RATE unset: 0
    limiter = limiter_for(settings_, {})
    assert isinstance(limiter, NoLimit)
    assert limiter.take("acme", 10**6) == 0.0
    assert limiter.status()["store"] == "none"
    assert prepare_box(settings_).env == {}  # nothing to share either
    assert check_rate_store(settings_) is None


def test_a_tls_url_makes_a_tls_client_with_the_urls_password() -> None:
    client = connect("rediss://:s3cret@127.0.0.1:6380/3", 0.05)
    pool = client.connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["password"] == "s3cret"
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["socket_timeout"] == 0.05
    assert pool.connection_kwargs["retry"].get_retries() == 0  # the caller decides retries


# --- per box: one bucket per tenant shared by the processes of one instance -----------------


def run_flood(
    procs: list[tuple[dict[str, str], str, float | None]], duration: float
) -> list[dict[str, Any]]:
    """Spawned processes (as waitress's workers are: a fresh interpreter, the environment
    inherited), each with its limiter from its `env`, all started at one moment."""
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    start = ctx.Value("d", 0.0)
    children = [
        ctx.Process(
            target=rate_flood.flood,
            args=(env, tenant, duration, pace, ready, go, start, results),
        )
        for env, tenant, pace in procs
    ]
    try:
        for child in children:
            child.start()
        for _ in children:
            ready.get(timeout=60)
        start.value = time.monotonic() + 0.3
        go.set()
        reports = [results.get(timeout=duration + 60) for _ in children]
    finally:
        for child in children:
            if child.pid is not None:
                child.join(timeout=10)
                if child.is_alive():
                    child.terminate()
    assert all(reports), "a flood process never started"
    return reports


def test_the_workers_of_one_box_share_one_limit(tmp_path: Path) -> None:
    env = env_for(rate=20, burst=20)
    with prepare_box(Settings.from_env(env), str(tmp_path)) as box:
        duration = 2.0
        reports = run_flood([({**env, **box.env}, "acme", None)] * 2, duration)
    assert {r["status"]["store"] for r in reports} == {"box"}
    accepted = sum(r["accepted"] for r in reports)
    one_limit = 20 + 20 * duration  # 60; a bucket per process would let 120 through
    assert one_limit - 3 <= accepted <= one_limit + 1, reports
    assert all(r["accepted"] > 0 for r in reports)  # both took from the one bucket


def test_forked_workers_share_the_parents_box(tmp_path: Path) -> None:
    """granian forks its workers: a limiter made before the fork holds across them."""
    make_box_file(["acme"], 20, str(tmp_path))
    path = next(tmp_path.glob("mailroom-rates-*/buckets"))
    limiter = BoxRates(str(path), 20.0, 20)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    start_at, duration = time.monotonic() + 0.5, 1.5
    children = [
        ctx.Process(target=rate_flood.forked, args=(limiter, "acme", start_at, duration, results))
        for _ in range(2)
    ]
    try:
        for child in children:
            child.start()
        reports = [results.get(timeout=30) for _ in children]
    finally:
        for child in children:
            if child.pid is not None:
                child.join(timeout=10)
                if child.is_alive():
                    child.terminate()
    accepted = sum(r["accepted"] for r in reports)
    assert 20 + 20 * duration - 3 <= accepted <= 20 + 20 * duration + 1, reports
    limiter.close()


def test_a_box_file_that_is_missing_or_foreign_falls_back_per_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings_ = Settings.from_env(env_for())
    assert BoxRates.attach({}, RATE, BURST) is None
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"not ours" * 100)
    with pytest.raises(BoxFileError, match="not a mailroom rate file"):
        BoxRates(str(foreign), RATE, BURST)
    with caplog.at_level(logging.ERROR, logger="mailroom.rates"):
        limiter = limiter_for(settings_, {ENV: str(tmp_path / "gone")})
    assert limiter.status()["store"] == "process"
    assert "hold per process instead" in caplog.text


def test_a_tenant_the_box_has_no_slot_for_is_still_limited(tmp_path: Path) -> None:
    with prepare_box(Settings.from_env(env_for(rate=10, burst=10)), str(tmp_path)) as box:
        limiter = BoxRates.attach(box.env, 10.0, 10)
        assert limiter is not None
        assert limiter.take(None, 10) == 0.0  # plain tokens have their slot
        assert limiter.take(None, 1) > 0
        assert limiter.take("newcomer", 10) == 0.0
        assert limiter.take("newcomer", 1) > 0
        limiter.close()


# --- per fleet: Redis ----------------------------------------------------------------------


def test_the_script_is_gcra_on_the_servers_clock(redis_server: RedisServer) -> None:
    buckets = RedisBuckets(connect(redis_server.url, 1.0), 10.0, 20)
    first = buckets.take("acme", 3, 5)
    assert first.granted == 5 and first.wait == 0.0  # at least the need, up to a block
    assert first.level == pytest.approx(15, abs=0.1)
    assert buckets.take("acme", 15, 5).granted == 15  # a need over the block is granted whole
    refused = buckets.take("acme", 4, 5)
    assert refused.granted == 0
    assert refused.wait == pytest.approx((4 - refused.level) / 10, abs=0.01)
    buckets.give("acme", 10)
    assert buckets.take("acme", 10, 1).granted == 10
    assert buckets.take("beta", 20, 5).granted == 20  # tenants apart
    key_ttl = connect(redis_server.url, 1.0).pttl("mailroom:rate:acme")
    assert 0 < key_ttl <= 3000  # an idle tenant's key goes once its bucket is full again


def fleet_limiter(
    url: str, rate: float = RATE, burst: int = BURST, failure: str = "open", box: Any = None
) -> FleetRates:
    env = env_for(rate, burst, RATE_STORE=url, RATE_STORE_FAILURE=failure)
    limiter = limiter_for(Settings.from_env(env), box.env if box is not None else {})
    assert isinstance(limiter, FleetRates)
    return limiter


def test_most_decisions_make_no_round_trip(redis_server: RedisServer) -> None:
    """A limit set high enough never to refuse (the benchmark's row): one round trip per block
    of payloads, and never more than a block held by the process."""
    limiter = fleet_limiter(redis_server.url, rate=1e6, burst=2_000_000)
    assert limiter.block == 1000
    for _ in range(10_000):
        assert limiter.take("acme", 3) == 0.0
        assert limiter._tenants["acme"].held <= limiter.block
    assert limiter.failover.round_trips <= 30_000 // 1000 + 1
    limiter.give_back("acme", 3)  # a refused collection: kept, up to the block
    assert limiter._tenants["acme"].held <= limiter.block


def test_give_back_keeps_a_block_and_returns_the_rest_to_redis_off_the_callers_thread(
    redis_server: RedisServer,
) -> None:
    """An event loop calls `give_back` inline: what the process may not hold goes back to
    Redis from the limiter's own thread, and the fleet's bucket has it again."""
    limiter = fleet_limiter(redis_server.url)  # block 5
    assert limiter.take("acme", BURST - 1) == 0.0  # the whole bucket, bar one
    trips = limiter.failover.round_trips
    callers = threading.current_thread()
    returned: list[threading.Thread] = []
    give = limiter.buckets.give

    def noting_give(tenant: str | None, payloads: int) -> None:
        returned.append(threading.current_thread())
        give(tenant, payloads)

    limiter.buckets.give = noting_give  # type: ignore[method-assign]
    limiter.give_back("acme", BURST - 1)
    wait_for(lambda: limiter.failover.round_trips == trips + 1, timeout=5)
    assert returned and returned[0] is not callers
    assert limiter._tenants["acme"].held == limiter.block
    other = fleet_limiter(redis_server.url)  # another process: the fleet's bucket is refilled
    assert other.take("acme", BURST - limiter.block - 1) == 0.0


def test_take_now_answers_without_a_round_trip_or_says_it_cannot(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """For an event loop: `take_now` never touches the network; None means "call take"."""
    limiter = fleet_limiter(redis_server.url)  # block 5
    assert limiter.take_now("acme", 1) is None  # nothing held yet, nothing known
    assert limiter.take("acme", 1) == 0.0  # the round trip brought a block
    trips = limiter.failover.round_trips
    assert [limiter.take_now("acme", 1) for _ in range(4)] == [0.0] * 4
    assert limiter.take_now("acme", 1) is None  # the block is spent
    assert limiter.failover.round_trips == trips
    redis_server.stop()
    assert limiter.take("acme", 1) == 0.0  # fails open, to the fallback
    assert limiter.take_now("acme", 1) == 0.0  # failing and not yet due: decided locally
    assert limiter.failover.round_trips == trips + 1
    with prepare_box(Settings.from_env(env_for()), str(tmp_path)) as box:
        box_limiter = limiter_for(Settings.from_env(env_for()), box.env)
        assert box_limiter.take_now("acme", BURST) == 0.0
        assert 0 < (box_limiter.take_now("acme", 1) or 0) <= 1 / RATE
    assert NoLimit().take_now("acme", 10**6) == 0.0


def test_a_flooding_tenant_is_refused_mostly_without_round_trips(
    redis_server: RedisServer,
) -> None:
    limiter = fleet_limiter(redis_server.url)
    report = rate_flood.take_until(limiter, "acme", time.monotonic(), 2.0)
    decisions = report["accepted"] + report["refused"]
    assert report["accepted"] <= BURST + RATE * 2.0 + limiter.block
    assert report["refused"] > 100
    # One round trip per block granted, and while refused at most one per block / rate.
    blocks = (BURST + RATE * 2.0) / limiter.block
    assert limiter.failover.round_trips <= 2 * blocks + 2, (limiter.failover.round_trips, report)
    assert limiter.failover.round_trips < decisions / 20


def test_three_instances_hold_one_limit_for_a_tenant_and_leave_the_other_alone(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Three instances of two processes each, each instance with its own box file, all on one
    Redis: a tenant flooding through all six gets one limit, within the documented error of
    one block per process; another tenant posting calmly is never refused."""
    env = env_for(RATE_STORE=redis_server.url)
    duration = 4.0
    boxes = [prepare_box(Settings.from_env(env), str(tmp_path)) for _ in range(3)]
    try:
        procs: list[tuple[dict[str, str], str, float | None]] = [
            ({**env, **box.env}, "acme", None) for box in boxes for _ in range(2)
        ]
        procs.append(({**env, **boxes[0].env}, "beta", 0.1))  # ~40 over 4 s: under its limit
        reports = run_flood(procs, duration)
    finally:
        for box in boxes:
            box.cleanup()
    acme = [r for r in reports if r["tenant"] == "acme"]
    (beta,) = [r for r in reports if r["tenant"] == "beta"]
    block = block_for(RATE, BURST)
    error = len(acme) * block  # at most one block per process either way
    one_limit = BURST + RATE * duration  # 300; one bucket per instance would let 900 through
    accepted = sum(r["accepted"] for r in acme)
    assert one_limit - error - 5 <= accepted <= one_limit + error + 1, acme
    assert {r["status"]["in_force"] for r in reports} == {"redis"}
    assert beta["refused"] == 0 and beta["accepted"] >= 20, beta
    assert max(r["slowest"] for r in reports) < 0.5


def flood_in_thread(
    limiter: FleetRates, phase: list[str], stop: threading.Event
) -> tuple[threading.Thread, list[tuple[str, float, float]]]:
    """Take one payload of acme at a time until `stop` (or 60 s, or 300,000 decisions),
    recording each decision's phase, wait and duration."""
    decisions: list[tuple[str, float, float]] = []

    def run() -> None:
        deadline = time.monotonic() + 60
        for _ in range(300_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            before = time.monotonic()
            wait = limiter.take("acme", 1)
            decisions.append((phase[0], wait, time.monotonic() - before))
            time.sleep(min(wait, rate_flood.REFUSED_PAUSE) if wait else 0.0005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, decisions


@pytest.mark.parametrize("failure", ["open", "closed"])
def test_redis_stopped_mid_flood_then_started_again(
    redis_server: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    caplog.set_level(logging.INFO, logger="mailroom.rates")
    rate, burst = 20.0, 40
    box = prepare_box(Settings.from_env(env_for(rate, burst)), str(tmp_path))
    limiter = fleet_limiter(redis_server.url, rate, burst, failure, box)
    phase, stop = ["up"], threading.Event()
    thread, decisions = flood_in_thread(limiter, phase, stop)
    try:
        time.sleep(1.0)
        redis_server.stop()
        phase[0] = "stopping"
        wait_for(lambda: limiter.status()["redis"]["failing"] == failure, timeout=10)
        phase[0] = "down"
        time.sleep(1.5)
        failing = limiter.status()
        redis_server.start()
        phase[0] = "restarting"
        wait_for(lambda: limiter.status()["in_force"] == "redis", timeout=30)
        phase[0] = "back"
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=10)
        box.cleanup()

    down = [(wait, took) for name, wait, took in decisions if name == "down"]
    assert len(down) > 50
    assert max(took for _, _, took in decisions) < 0.5  # every decision answered, quickly
    assert failing["redis"]["reachable"] is False and failing["redis"]["last_error"]
    if failure == "open":  # the per-box limit: a full bucket of 40, then 20 a second
        assert failing["in_force"] == "box"
        assert 1 <= sum(1 for wait, _ in down if wait == 0.0) <= burst + rate * 1.5 + 2
    else:
        assert failing["in_force"].startswith("none: refusing")
        assert all(wait >= CLOSED_WAIT for wait, _ in down)
    status = limiter.status()["redis"]
    assert status["failures"] <= 12  # retried with backoff, not on every decision
    assert status["decisions_without_store"] >= len(down)
    lines = [r.getMessage() for r in caplog.records if r.name == "mailroom.rates"]
    assert sum("failed" in line for line in lines) == 1, lines  # one line as it starts failing
    assert sum("reachable again" in line for line in lines) == 1, lines  # one as it recovers

    # The fleet limit holds again: another instance empties the fleet's bucket, and this one,
    # whose own box bucket is full, is refused within the block it may still hold.
    other = fleet_limiter(redis_server.url, rate, burst)
    for _ in range(1000):
        if other.take("acme", 1):
            break
    refusals = [limiter.take("acme", 1) > 0 for _ in range(limiter.block + 2)]
    assert any(refusals), refusals


def test_a_stalled_redis_costs_each_decision_a_bounded_wait(
    redis_server: RedisServer,
) -> None:
    """SIGSTOP: the port still accepts connections, nothing answers. Decisions from several
    threads wait at most about one timeout (50 ms) each, then fail open."""
    limiter = fleet_limiter(redis_server.url, rate=20, burst=40)
    phase, stop = ["up"], threading.Event()
    floods = [flood_in_thread(limiter, phase, stop) for _ in range(4)]
    try:
        time.sleep(0.5)
        redis_server.pause()
        phase[0] = "paused"
        wait_for(lambda: limiter.status()["redis"]["failing"] == "open", timeout=10)
        time.sleep(1.0)
        redis_server.resume()
        phase[0] = "resumed"
        wait_for(lambda: limiter.status()["in_force"] == "redis", timeout=30)
    finally:
        stop.set()
        for thread, _ in floods:
            thread.join(timeout=10)
    paused = [took for _, decisions in floods for name, _, took in decisions if name == "paused"]
    assert len(paused) > 50
    assert max(paused) < 0.5, max(paused)  # 50 ms timeouts, not redis-py's 5 s and 10 retries
    assert "Timeout" in (limiter.status()["redis"]["last_error"] or "")


def test_check_rate_store_says_whether_redis_answers(redis_server: RedisServer) -> None:
    env = env_for(RATE_STORE=redis_server.url)
    assert check_rate_store(Settings.from_env(env)) is None
    redis_server.stop()
    line = check_rate_store(Settings.from_env(env))
    assert line is not None and "does not answer" in line


def test_a_recovered_redis_is_seen_without_tenant_traffic(redis_server: RedisServer) -> None:
    """/healthz and the failing gauge follow Redis back with no tenant sending: the sampler's
    recheck tries it once the backoff has passed (tried as an operator would, it stayed
    "failing" for minutes after Redis answered PING again)."""
    limiter = fleet_limiter(redis_server.url)
    assert limiter.take("acme", 1) == 0.0
    redis_server.stop()
    limiter.take("acme", BURST)  # asks Redis (its block is spent): fails, falls back per box
    assert limiter.status()["redis"]["failing"] == "open"
    limiter.recheck()  # within the backoff: not tried again
    assert limiter.failover.failures == 1
    redis_server.start()
    deadline = time.monotonic() + 15
    while limiter.failover.failing and time.monotonic() < deadline:
        limiter.recheck()  # what the sampler thread does once a second
        time.sleep(0.1)
    assert limiter.status()["redis"]["failing"] is None
    assert limiter.status()["in_force"] == "redis"
