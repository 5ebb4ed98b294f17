"""SIGTERM, full mailboxes and ACK_MODE=stored, against the real service process."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests

from bench.s3sink import S3Sink
from store.spool import DeadLetterSpool
from tests.support import (
    ANYWHERE,
    ServiceProcess,
    post_collections,
    replay_spool,
    sink_env,
    wait_for,
)


def identity(document: dict) -> tuple:
    return (document["client"], document["n"], document["i"])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def spooled_documents(spool_dir: Path) -> list[dict]:
    return [orjson.loads(obj.body) for obj in DeadLetterSpool(spool_dir, ANYWHERE).waiting()]


class Posters:
    """Clients posting 3-payload collections (at most 5,000 each) until stopped: the payloads
    answered 202 in `acked`, the error code of each 503 in `errors`."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.acked: list[dict] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(i,)) for i in range(clients)]
        for thread in self._threads:
            thread.start()

    def _post(self, number: int) -> None:
        with requests.Session() as http:
            for n in range(5000):
                if self._stop.is_set():
                    return
                data = [{"client": number, "n": n, "i": i} for i in range(3)]
                try:
                    answer = http.post(
                        self.url + "/payloads",
                        json={"version": "1", "token": "t", "data": data},
                        timeout=5,
                    )
                except requests.RequestException:
                    time.sleep(0.01)
                    continue
                if answer.status_code == 202:
                    self.acked.extend(data)
                elif answer.status_code == 503:
                    self.errors.append(answer.json()["error"])
                    time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_sigterm_under_load_exits_in_time_and_loses_nothing(
    sink: S3Sink, tmp_path: Path, server: str
) -> None:
    sink.latency = 0.2  # slow S3: the mailboxes cannot be emptied before the deadline
    spool_dir = tmp_path / "spool"
    env = sink_env(
        sink, spool_dir, SERVER=server, MAX_WORKERS="2", MAX_QUEUE="40", SHUTDOWN_TIMEOUT="6"
    )
    service = ServiceProcess(env).start()
    posters = Posters(service.url, clients=4)
    acked, errors = posters.acked, posters.errors
    wait_for(lambda: len(acked) >= 60, timeout=10)
    signalled = time.monotonic()
    assert service.proc is not None
    service.proc.send_signal(signal.SIGTERM)
    try:
        code, log = service.stop(timeout=15, signal_it=False)
        took = time.monotonic() - signalled
    finally:
        posters.stop()

    assert code == 0, log
    assert took < 6 + 2, log
    if server == "waitress":  # 503 for a grace second; granian refuses connections at once
        assert "shutting_down" in errors, log
    landed = [orjson.loads(obj.body) for obj in sink.objects.values()]
    spooled = spooled_documents(spool_dir)
    assert spooled, "with a slow S3 and a short timeout some payloads must have been spooled"
    assert {identity(d) for d in acked} <= {identity(d) for d in landed + spooled}

    sink.latency = 0
    assert "holding 0 payload(s) still failing" in replay_spool(env)
    assert DeadLetterSpool(spool_dir, ANYWHERE).files() == []
    landed = [orjson.loads(obj.body) for obj in sink.objects.values()]
    assert {identity(d) for d in acked} <= {identity(d) for d in landed}
    assert len(landed) == len({identity(d) for d in landed})  # each payload once


def test_full_mailboxes_answer_503_and_memory_stays_flat(sink: S3Sink, tmp_path: Path) -> None:
    sink.latency = 20.0  # S3 stalls: nothing completes while we push
    env = sink_env(sink, tmp_path / "spool", MAX_WORKERS="2", MAX_QUEUE="20", SHUTDOWN_TIMEOUT="4")
    service = ServiceProcess(env).start()
    assert service.proc is not None
    try:
        first = post_collections(service.url, [[{"n": i, "pad": "x" * 200}] * 3 for i in range(60)])
        accepted = sum(status == 202 for status, _ in first)
        # 2 mailboxes of 20 payloads, plus the collection each uploader has in hand
        assert 0 < accepted <= 2 * (20 // 3 + 1)
        before = rss_kib(service.proc.pid)
        burst = [[{"n": i, "pad": "x" * 200}] * 3 for i in range(1500)]
        answers = post_collections(service.url, burst, clients=8)
        after = rss_kib(service.proc.pid)
        assert {status for status, _ in answers} == {503}
        answer = requests.post(
            service.url + "/payloads",
            json={"version": "1", "token": "t", "data": [{"n": 1}] * 3},
            timeout=5,
        )
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["error"] == "overloaded"
    finally:
        code, log = service.stop(timeout=20)
    assert code == 0, log
    assert after - before < 4096, f"RSS grew {after - before} KiB over 1500 refused requests"


def test_ack_mode_stored_answers_200_once_payloads_are_in_s3(sink: S3Sink, tmp_path: Path) -> None:
    sink.latency = 0.02
    env = sink_env(sink, tmp_path / "spool", ACK_MODE="stored", STORED_ACK_TIMEOUT="2")
    service = ServiceProcess(env).start()
    try:
        data = [{"client": 0, "n": 0, "i": i} for i in range(3)]
        answer = requests.post(
            service.url + "/payloads", json={"version": "1", "token": "t", "data": data}, timeout=10
        )
        assert answer.status_code == 200
        body = answer.json()
        assert (body["accepted"], body["stored"], body["repeat"]) == (3, 3, False)
        assert [receipt["line"] for receipt in body["receipts"]] == [None, None, None]
        landed = {identity(orjson.loads(obj.body)) for obj in sink.objects.values()}
        assert landed == {identity(d) for d in data}  # already there when answered

        sink.go_down_for(4)
        late = [{"client": 1, "n": 0, "i": i} for i in range(2)]
        answer = requests.post(
            service.url + "/payloads", json={"version": "1", "token": "t", "data": late}, timeout=10
        )
        assert answer.status_code == 503
        body = answer.json()
        assert (body["error"], body["accepted"], body["stored"]) == ("not_confirmed", 2, 0)
        assert (body["spooled"], body["pending"]) == (0, 2)  # never claimed as landing
        assert "not yet durable" in body["message"]
        assert "Do not resend" in body["message"]
        wait_for(lambda: sink.payload_count() == 5, timeout=30, interval=0.2)
    finally:
        code, log = service.stop()
    assert code == 0, log


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_sigterm_to_every_process_during_an_s3_hang_loses_nothing(
    sink: S3Sink, tmp_path: Path, server: str
) -> None:
    """Heroku signals every process of a dyno: each worker gets SIGTERM from it and once more
    from its parent. Tried as an operator would, under granian that hung a worker in about a
    third of the runs (granian's own handler, called again, waits for ever holding the GIL)
    until it was killed with accepted payloads in memory."""
    spool_dir = tmp_path / "spool"
    env = sink_env(
        sink,
        spool_dir,
        SERVER=server,
        WEB_CONCURRENCY="2",
        MAX_WORKERS="2",
        MAX_QUEUE="200",
        SHUTDOWN_TIMEOUT="6",
        UPLOAD_RETRY_SECONDS="60",
    )
    service = ServiceProcess(env).start()
    posters = Posters(service.url, clients=8)
    acked = posters.acked
    wait_for(lambda: len(acked) >= 150, timeout=10)
    sink.hang_for(60)  # S3 takes the PUTs and answers none: what is held must be spooled
    wait_for(lambda: sink.stats.held >= 2, timeout=10)  # uploads caught in the hang
    signalled = time.monotonic()
    service.signal_all(signal.SIGTERM)
    try:
        code, log = service.stop(timeout=25, signal_it=False)
        took = time.monotonic() - signalled
    finally:
        posters.stop()
        sink.reset_faults()
    assert code == 0, log
    assert took < 6 + 2, (took, log)
    # Each worker that served drained to the end (under waitress one may have been stopped
    # while it started, having accepted nothing).
    assert log.count('"event":"actors_drained"') == log.count('"event":"serving"') >= 1, log
    landed = [orjson.loads(obj.body) for obj in sink.objects.values()]
    spooled = spooled_documents(spool_dir)
    assert {identity(d) for d in acked} <= {identity(d) for d in landed + spooled}


def test_sigterm_while_the_workers_start_is_acted_on(sink: S3Sink, tmp_path: Path) -> None:
    """A SIGTERM that came while a granian worker was being built was lost: the worker served
    on until granian killed it 30 s later, what it had accepted meanwhile unstored."""
    service = ServiceProcess(sink_env(sink, tmp_path / "spool", WEB_CONCURRENCY="2"))
    service.start(ready=False)
    wait_for(lambda: "Spawning worker" in service.log(), timeout=20, interval=0.005)
    signalled = time.monotonic()
    service.signal_all(signal.SIGTERM)  # the workers are building their mailrooms now
    code, log = service.stop(timeout=30, signal_it=False)
    took = time.monotonic() - signalled
    assert code == 0, log
    assert took < 25 + 2, (took, log)  # within SHUTDOWN_TIMEOUT's default, not killed at 30
    assert "refused to gracefully stop" not in log, log
