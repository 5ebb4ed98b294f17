"""The real service against an S3 endpoint that misbehaves: every payload lands exactly once."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.s3sink import S3Sink
from tests.support import ServiceProcess, post_collections, sink_destination, sink_env, wait_for


def landed_documents(sink: S3Sink) -> list[dict]:
    return [orjson.loads(obj.body) for obj in list(sink.objects.values())]


def collections(count: int, size: int, tag: str) -> list[list[dict]]:
    return [[{"tag": tag, "c": c, "i": i} for i in range(size)] for c in range(count)]


def identities(documents: list[dict]) -> list[tuple]:
    return sorted((d["tag"], d["c"], d["i"]) for d in documents)


def run_service(sink: S3Sink, tmp_path: Path, **env: str) -> ServiceProcess:
    return ServiceProcess(sink_env(sink, tmp_path / "spool", MAX_WORKERS="4", **env)).start()


def test_thirty_percent_slowdowns_are_retried_until_every_payload_lands_once(
    sink: S3Sink, tmp_path: Path
) -> None:
    sink.fail_share(0.3)
    service = run_service(sink, tmp_path)
    try:
        sent = collections(100, 3, "slowdown")
        answers = post_collections(service.url, sent)
        assert [status for status, _ in answers] == [202] * 100
        wait_for(lambda: sink.payload_count() >= 300, timeout=60, interval=0.2)
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert sink.stats.failed_puts > 30  # the faults really happened
    assert identities(landed_documents(sink)) == identities([d for c in sent for d in c])
    assert len(sink.objects) == 300
    assert sink.stats.overwrites == 0
    assert not list((tmp_path / "spool").glob("*.spool"))


def test_an_s3_outage_of_fifteen_seconds_loses_nothing(sink: S3Sink, tmp_path: Path) -> None:
    service = run_service(sink, tmp_path)
    try:
        sink.go_down_for(15)
        sent = collections(40, 3, "outage")
        answers = post_collections(service.url, sent)
        assert [status for status, _ in answers] == [202] * 40
        assert sink.payload_count() == 0  # nothing could land during the outage
        wait_for(lambda: sink.payload_count() >= 120, timeout=60, interval=0.5)
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert identities(landed_documents(sink)) == identities([d for c in sent for d in c])
    assert sink.stats.overwrites == 0
    assert not list((tmp_path / "spool").glob("*.spool"))


def test_the_service_replays_the_spool_at_start(sink: S3Sink, tmp_path: Path) -> None:
    from store import S3Object
    from store.spool import DeadLetterSpool

    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    left_over = [S3Object(f"payloads/old/{i}.json", b'{"old":%d}' % i) for i in range(5)]
    spool.write(left_over, reason="an earlier run")
    service = run_service(sink, tmp_path)
    try:
        wait_for(lambda: sink.payload_count() == 5, timeout=20, interval=0.2)
        wait_for(lambda: spool.files() == [], timeout=10)
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert sorted(sink.objects) == sorted(obj.key for obj in left_over)
    assert "replayed the spool: 5 payload(s) in 5 object(s) landed, 0 payload(s) still" in log


def test_sigterm_during_an_outage_keeps_its_backoff_and_spools_everything(
    sink: S3Sink, tmp_path: Path
) -> None:
    import time

    from store.spool import DeadLetterSpool

    sink.fail_share(1.0)  # S3 failing fast: every PUT answered 503 SlowDown at once
    sink.latency = 0.0
    service = run_service(sink, tmp_path, UPLOAD_RETRY_SECONDS="600", SHUTDOWN_TIMEOUT="8")
    try:
        sent = collections(8, 3, "sigterm-outage")
        answers = post_collections(service.url, sent)
        assert [status for status, _ in answers] == [202] * 8
        time.sleep(3)  # the backoff reaches its 2 s cap
        before = sink.stats.failed_puts
        time.sleep(3)
        rate_serving = (sink.stats.failed_puts - before) / 3
        assert service.proc is not None
        service.proc.send_signal(15)
        before = sink.stats.failed_puts
        time.sleep(3)
        rate_draining = (sink.stats.failed_puts - before) / 3
    finally:
        code, log = service.stop(timeout=20, signal_it=False)
    assert code == 0, log
    assert rate_draining <= 2 * max(rate_serving, 1.0), (rate_serving, rate_draining, log)
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    spooled = [orjson.loads(obj.body) for obj in spool.waiting()]
    assert identities(spooled) == identities([d for c in sent for d in c])  # each once
    assert sink.payload_count() == 0
