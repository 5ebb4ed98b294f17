"""WEB_CONCURRENCY=2: two serving processes on one port under a parent that keeps them alive."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from bench.s3sink import S3Sink
from tests.support import ServiceProcess, post_collections, sink_env, wait_for


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def process_tags(sink: S3Sink) -> set[str]:
    """The 24-hex-digit process tag in each key's id (`{ms}-{collection id}-{index}.json`)
    tells which process accepted it."""
    return {key.rsplit("/", 1)[1].split("-")[1][:24] for key in list(sink.objects)}


def kill_and_serve_again(
    service: ServiceProcess, sink: S3Sink, pid: int, serving: str, times: int, *, landed: int
) -> None:
    """SIGKILL one serving process; wait until a new one serves (`serving` logged `times`
    times in all), then check 50 more payloads are answered 202 and land."""
    assert service.proc is not None
    parent = service.proc.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(kids := children(parent)) == 2 and pid not in kids, timeout=20)
    wait_for(lambda: service.log().count(serving) == times, timeout=20)
    answers = post_collections(service.url, [[{"n": i}] for i in range(50)])
    assert {status for status, _ in answers} == {202}
    wait_for(lambda: sink.payload_count() == landed + 50, timeout=20)


def test_two_processes_share_the_port_and_a_dead_one_is_replaced(sink, tmp_path) -> None:
    env = sink_env(
        sink, tmp_path / "spool", SERVER="waitress", WEB_CONCURRENCY="2", SHUTDOWN_TIMEOUT="5"
    )
    service = ServiceProcess(env).start()
    assert service.proc is not None
    try:
        wait_for(lambda: len(children(service.proc.pid)) == 2, timeout=20)
        first = children(service.proc.pid)
        sent = 0
        for _ in range(20):  # new connections each round, until both processes took some
            answers = post_collections(service.url, [[{"n": i}] for i in range(20)], clients=8)
            assert {status for status, _ in answers} == {202}
            sent += 20
            wait_for(lambda total=sent: sink.payload_count() == total, timeout=20)
            if len(process_tags(sink)) == 2:
                break
        assert len(process_tags(sink)) == 2  # both processes took requests

        kill_and_serve_again(service, sink, first[0], "worker 0: serving", 2, landed=sent)
        started = time.monotonic()
    finally:
        code, log = service.stop(timeout=20)
    assert code == 0, log
    assert time.monotonic() - started < 5 + 5
    assert f"(pid {first[0]}) exited with signal SIGKILL" in log
    assert log.count("shut down cleanly") == 2  # each child drained
    assert "all workers stopped" in log


def test_under_granian_a_killed_worker_is_replaced_and_both_drain(sink, tmp_path) -> None:
    env = sink_env(sink, tmp_path / "spool", WEB_CONCURRENCY="2", SHUTDOWN_TIMEOUT="5")
    service = ServiceProcess(env).start()
    assert service.proc is not None
    try:
        wait_for(lambda: service.log().count("serving POST") == 2, timeout=20)
        first = children(service.proc.pid)
        assert len(first) == 2
        answers = post_collections(service.url, [[{"n": i}] for i in range(40)], clients=8)
        assert {status for status, _ in answers} == {202}
        wait_for(lambda: sink.payload_count() == 40, timeout=20)

        kill_and_serve_again(service, sink, first[0], "serving POST", 3, landed=40)
        started = time.monotonic()
    finally:
        code, log = service.stop(timeout=20)
    assert code == 0, log
    assert time.monotonic() - started < 5 + 5
    assert log.count("shut down cleanly") == 2  # each live worker drained
    assert "all workers stopped" in log
