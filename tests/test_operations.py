"""The running service as an operator sees it: metrics, logs, health, idle clients."""

from __future__ import annotations

import re
import socket
import time

import orjson
import pytest
import requests

from tests.support import ServiceProcess, post_collections, sink_env, wait_for

SECRET = "tok-Zq81-very-secret"


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text (0 if absent)."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def json_lines(log: str) -> list[dict]:
    return [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_metrics_add_up_across_processes(sink, tmp_path, server: str) -> None:
    env = sink_env(
        sink, tmp_path / "spool", SERVER=server, WEB_CONCURRENCY="2", INGEST_TOKENS=SECRET
    )
    service = ServiceProcess(env).start()
    try:
        wait_for(lambda: service.log().count("serving POST") == 2, timeout=20)
        body = {"version": "1", "token": SECRET, "data": [{"n": 1}, {"n": 2}]}
        with requests.Session() as http:
            for _ in range(30):  # fresh connections too, so both processes answer
                assert http.post(service.url + "/payloads", json=body, timeout=5).ok
                assert requests.post(service.url + "/payloads", json=body, timeout=5).ok
        wait_for(lambda: sink.payload_count() == 120, timeout=20)

        def scraped() -> str:
            """Every count in: per-request counts of the other process are saved once a
            second (its own are live)."""
            text = requests.get(service.url + "/metrics", timeout=5).text
            settled = (
                metric(text, "mailroom_uploaded_payloads_total") == 120
                and metric(text, "mailroom_payloads_accepted_total", 'tenant="none"') == 120
            )
            return text if settled else ""

        text = wait_for(scraped, timeout=10, interval=0.2)
        assert metric(text, "mailroom_payloads_accepted_total", 'tenant="none"') == 120
        assert (
            metric(
                text, "mailroom_http_requests_total", 'method="POST",route="/payloads",status="202"'
            )
            == 60
        )
        assert metric(text, "mailroom_uploads_total", 'kind="payload"') == 120
        assert metric(text, "mailroom_upload_seconds_count") == 120
        # One series per process and slot (a pid label), not slot 0 of both summed together.
        assert len(re.findall(r'^mailroom_mailbox_depth\{pid="\d+",slot="0"\} ', text, re.M)) == 2
        assert metric(text, "mailroom_uploader_slots_alive") == 64  # 32 in each process
        assert "mailroom_supervisor_restarts_total" in text
        assert "mailroom_spool_bytes" in text
        assert SECRET not in text
        names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
        assert all(n.startswith("mailroom_") for n in names if n), names
    finally:
        code, log = service.stop()
    assert code == 0, log


def test_logs_are_json_carry_request_ids_and_never_a_token(sink, tmp_path) -> None:
    env = sink_env(sink, tmp_path / "spool", INGEST_TOKENS=SECRET, LOG_LEVEL="DEBUG")
    env.pop("LOG_FORMAT", None)
    service = ServiceProcess(env).start()
    try:
        answer = requests.post(
            service.url + "/payloads",
            json={"version": "1", "token": "wrong-" + SECRET, "data": [{"n": 1}]},
            headers={"X-Request-ID": "req-4711"},
            timeout=5,
        )
        assert answer.status_code == 401
        assert answer.headers["X-Request-ID"] == "req-4711"
        ok = post_collections(service.url, [[{"n": i}] for i in range(5)])
        assert {status for status, _ in ok} == {401}  # post_collections sends token "t"
    finally:
        code, log = service.stop()
    assert code == 0, log
    records = json_lines(log)
    assert len(records) == len([line for line in log.splitlines() if line.strip()])
    assert {"time", "level", "logger", "message", "process"} <= set(records[0])
    refused = [r for r in records if r.get("request_id") == "req-4711"]
    assert refused and "token is not accepted" in refused[0]["message"]
    settings = next(r for r in records if r.get("event") == "settings")
    assert "1 token(s)" in settings["message"]
    assert SECRET not in log


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_serving_processes_freeze_their_start_up_heap_and_granian_runs_uvloop(
    sink, tmp_path, server: str
) -> None:
    """Full collections walking start-up's objects stalled a worker by tens of ms under load
    (docs/benchmarks.md): each serving process freezes them before its first request. And
    granian's workers run uvloop, which served more for less CPU than asyncio's loop."""
    env = sink_env(sink, tmp_path / "spool", SERVER=server, WEB_CONCURRENCY="2", LOG_LEVEL="DEBUG")
    env.pop("LOG_FORMAT", None)
    service = ServiceProcess(env).start()
    try:
        answers = post_collections(service.url, [[{"n": i}] for i in range(20)])
        assert {status for status, _ in answers} == {202}
    finally:
        code, log = service.stop()
    assert code == 0, log
    records = json_lines(log)
    frozen = [r for r in records if r.get("event") == "heap_frozen"]
    assert len({r["process"] for r in frozen}) == 2, frozen  # each worker, once
    assert all(r["frozen"] > 10_000 for r in frozen), frozen  # the imports, the actors
    assert sink.payload_count() == 20
    if server == "granian":  # each worker's loop is uvloop's (docs/benchmarks.md)
        loops = [r["loop"] for r in records if r.get("event") == "event_loop"]
        assert loops == ["uvloop", "uvloop"], loops


def test_without_ingest_tokens_the_start_warns(sink, tmp_path) -> None:
    service = ServiceProcess(sink_env(sink, tmp_path / "spool")).start()
    code, log = service.stop()
    assert code == 0
    warning = next(r for r in json_lines(log) if r.get("event") == "auth_disabled")
    assert warning["level"] == "WARNING"
    assert "any token is accepted" in warning["message"]


def test_healthz_of_the_running_service(sink, tmp_path) -> None:
    service = ServiceProcess(sink_env(sink, tmp_path / "spool", MAX_WORKERS="3")).start()
    try:
        answer = requests.get(service.url + "/healthz", timeout=5)
        assert answer.status_code == 200
        body = answer.json()
        assert (body["status"], body["draining"], body["slots_alive"]) == ("ok", False, 3)
        assert [s["slot"] for s in body["slots"]] == [0, 1, 2]
        assert body["spool"] == {
            "files": 0,
            "bytes": 0,
            "oldest_age_seconds": None,
            "writable": True,
            "error": None,
        }
        assert (body["held"], body["router_alive"], body["gave_up"]) == (0, True, None)
        # No upload yet: S3 assumed at 100 ms, 3 uploaders store 30/s, 375 in half of 25 s.
        assert body["drain"] == {
            "payloads_per_second": 30.0,
            "held_limit": 375,
            "uploads_measured": 0,
        }
        data = {"version": "1", "token": "t", "data": [{"n": n} for n in range(6)]}
        assert requests.post(service.url + "/payloads", json=data, timeout=5).status_code == 202
        wait_for(lambda: sink.payload_count() == 6, timeout=10)

        def measured() -> dict | None:
            drain = requests.get(service.url + "/healthz", timeout=5).json()["drain"]
            return drain if drain["uploads_measured"] == 6 else None

        drain = wait_for(measured, timeout=5, interval=0.2)  # snapshots are up to 1 s old
        # S3 at a few ms a PUT: the pace measured is faster than the assumption
        assert drain["payloads_per_second"] > 30 and drain["held_limit"] > 375
    finally:
        service.stop()


def test_idle_and_slow_clients_cannot_pin_waitress(sink, tmp_path) -> None:
    env = sink_env(
        sink, tmp_path / "spool", SERVER="waitress", CHANNEL_TIMEOUT="2", WEB_THREADS="2"
    )
    service = ServiceProcess(env).start()
    idle: list[socket.socket] = []
    try:
        for i in range(40):  # more connections than threads, each sending half a request
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            sock.sendall(b"POST /payloads HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            if i % 2:
                sock.sendall(b'"version"')
            idle.append(sock)
        assert_served_quickly(service)  # while the idle ones hang
        assert closed_by_server(idle, timeout=15) == len(idle)  # channel_timeout closed them
    finally:
        for sock in idle:
            sock.close()
        service.stop()


def test_under_granian_header_tricklers_are_closed_and_slow_bodies_pin_nobody(
    sink, tmp_path
) -> None:
    service = ServiceProcess(sink_env(sink, tmp_path / "spool", HEADER_TIMEOUT="2")).start()
    tricklers: list[socket.socket] = []
    slow_bodies: list[socket.socket] = []
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            sock.sendall(b"POST /payloads HTTP/1.1\r\nHost: x\r\n")  # headers never end
            tricklers.append(sock)
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            sock.sendall(b"POST /payloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json")
            sock.sendall(b"\r\nContent-Length: 100\r\n\r\n{")  # a body that never ends
            slow_bodies.append(sock)
        for _ in range(20):
            assert_served_quickly(service)  # while the slow ones hang
        assert closed_by_server(tricklers, timeout=10) == len(tricklers)  # HEADER_TIMEOUT
    finally:
        for sock in tricklers + slow_bodies:
            sock.close()
        service.stop()


def assert_served_quickly(service: ServiceProcess) -> None:
    started = time.monotonic()
    answer = requests.post(
        service.url + "/payloads",
        json={"version": "1", "token": "t", "data": [{"n": 1}]},
        timeout=5,
    )
    assert answer.status_code == 202
    assert time.monotonic() - started < 2


def closed_by_server(socks: list[socket.socket], *, timeout: float) -> int:
    """How many of these connections the server closed within `timeout` seconds each."""
    closed = 0
    for sock in socks:
        sock.settimeout(timeout)
        try:
            closed += sock.recv(1024) == b""
        except ConnectionResetError:
            closed += 1
    return closed
