"""Bodies over a real socket: cut short by their client, too slow, or waiting for S3.

A body that ends before its Content-Length (or before a chunked body's last chunk) because the
client went away is never accepted, under either server: the client saw no answer and will
resend. Under granian (ASGI) a body must arrive whole within BODY_TIMEOUT, and a request that
waits for S3 (ACK_MODE=stored) holds no thread: the rest of the service keeps answering. A
SIGTERM with such requests waiting during an S3 outage still exits within SHUTDOWN_TIMEOUT of
the signal, every payload spooled and every waiting client answered.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
import requests

from bench.s3sink import S3Sink
from store.spool import DeadLetterSpool
from tests.support import ANYWHERE, ServiceProcess, sink_env, wait_for

BODY = orjson.dumps({"version": "1", "token": "t", "data": [{"n": i} for i in range(40)]})


def head(length: int | None) -> bytes:
    framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    return b"POST /payloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s\r\n\r\n" % (
        framing
    )


def send_and_vanish(port: int, *parts: bytes) -> None:
    """Send the parts, then close the connection without waiting for an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for part in parts:
            sock.sendall(part)
            time.sleep(0.01)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_a_body_its_client_cut_short_is_never_accepted(
    sink: S3Sink, tmp_path: Path, server: str
) -> None:
    spool = tmp_path / "spool"
    service = ServiceProcess(sink_env(sink, spool, SERVER=server)).start()
    try:
        half = len(BODY) // 2
        for _ in range(10):
            send_and_vanish(service.port, head(len(BODY)), BODY[:half])  # short of its length
            send_and_vanish(service.port, head(None), chunk(BODY[:half]))  # no last chunk
            send_and_vanish(service.port, head(None), chunk(BODY))  # the whole JSON, no end
        whole = requests.post(
            service.url + "/payloads",
            json={"version": "1", "token": "t", "data": [{"whole": True}]},
            timeout=5,
        )
        assert whole.status_code == 202
    finally:
        code, log = service.stop()  # a drain: anything accepted is now in S3 or the spool
    assert code == 0, log
    landed = [orjson.loads(obj.body) for obj in sink.objects.values()]
    assert landed == [{"whole": True}], log
    assert DeadLetterSpool(spool, ANYWHERE).files() == []
    if server == "granian":
        refused = [line for line in log.splitlines() if '"status":400' in line]
        assert len(refused) == 30, log  # each answered 400 (to no one), none accepted


def test_a_body_slower_than_body_timeout_gets_408_and_its_connection_closed(
    sink: S3Sink, tmp_path: Path
) -> None:
    env = sink_env(sink, tmp_path / "spool", SERVER="granian", BODY_TIMEOUT="1")
    service = ServiceProcess(env).start()
    try:
        # Headers and part of the body; headers alone (none of the body); a chunked start.
        for sent in (head(len(BODY)) + BODY[:10], head(len(BODY)), head(None) + b"5\r\nhello"):
            with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
                sock.sendall(sent)
                started = time.monotonic()
                response = b""
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break  # the server closed the connection
                    response += data
                took = time.monotonic() - started
            assert response.startswith(b"HTTP/1.1 408"), response[:200]
            assert orjson.loads(response.partition(b"\r\n\r\n")[2])["error"] == "body_timeout"
            assert 0.9 < took < 5
        # The service is not the worse for it.
        fine = requests.post(
            service.url + "/payloads",
            data=BODY,
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert fine.status_code == 202
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert sink.payload_count() == 40


def test_stored_acks_wait_on_the_event_loop_without_holding_up_other_requests(
    sink: S3Sink, tmp_path: Path
) -> None:
    env = sink_env(
        sink, tmp_path / "spool", SERVER="granian", ACK_MODE="stored", STORED_ACK_TIMEOUT="20"
    )
    service = ServiceProcess(env).start()
    waiting = 40
    try:
        sink.hang_for(60)  # S3 takes the PUTs and answers none of them
        with ThreadPoolExecutor(waiting) as pool:
            posts = [
                pool.submit(
                    requests.post,
                    service.url + "/payloads",
                    json={"version": "1", "token": "t", "data": [{"n": n}]},
                    timeout=30,
                )
                for n in range(waiting)
            ]
            wait_for(lambda: health(service)["held"] == waiting, timeout=10)
            # Every stored request is waiting; the loop still answers at once.
            for _ in range(5):
                started = time.monotonic()
                assert requests.get(service.url + "/livez", timeout=5).status_code == 200
                assert time.monotonic() - started < 0.5
            assert all(not post.done() for post in posts)
            sink.reset_faults()  # S3 answers: every waiting request gets its 200
            answers = [post.result() for post in posts]
    finally:
        sink.reset_faults()
        code, log = service.stop()
    assert code == 0, log
    assert [answer.status_code for answer in answers] == [200] * waiting
    assert all(answer.json()["stored"] == 1 for answer in answers)


def test_sigterm_during_an_outage_with_stored_acks_waiting_exits_within_shutdown_timeout(
    sink: S3Sink, tmp_path: Path
) -> None:
    """Measured before the ASGI edge: 27.5 s with SHUTDOWN_TIMEOUT=25, granian waiting for the
    requests first. The deadline now counts from the signal, as under waitress."""
    spool = tmp_path / "spool"
    env = sink_env(
        sink,
        spool,
        SERVER="granian",
        ACK_MODE="stored",
        STORED_ACK_TIMEOUT="30",  # longer than the shutdown: the drain must answer them
        SHUTDOWN_TIMEOUT="5",
        UPLOAD_RETRY_SECONDS="60",
    )
    service = ServiceProcess(env).start()
    answers: list[requests.Response] = []
    try:
        sink.go_down_for(120)  # every PUT fails: retried until the drain's deadline
        threads = [
            threading.Thread(
                target=lambda n=n: answers.append(
                    requests.post(
                        service.url + "/payloads",
                        json={"version": "1", "token": "t", "data": [{"n": n}, {"n": -n}]},
                        timeout=40,
                    )
                )
            )
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: health(service)["held"] == 16, timeout=10)
        assert service.proc is not None
        signalled = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        code, log = service.stop(timeout=20, signal_it=False)
        took = time.monotonic() - signalled
        for thread in threads:
            thread.join(10)
    finally:
        sink.reset_faults()
    assert code == 0, log
    assert took < 5 + 1.5, (took, log)
    assert len(answers) == 8  # every waiting client got an answer before the exit
    for answer in answers:
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert (body["error"], body["accepted"], body["spooled"]) == ("not_confirmed", 2, 2)
    spooled = sorted(
        orjson.loads(obj.body)["n"] for obj in DeadLetterSpool(spool, ANYWHERE).waiting()
    )
    assert spooled == sorted([n for n in range(8)] + [-n for n in range(8)])


def health(service: ServiceProcess) -> dict:
    return requests.get(service.url + "/healthz", timeout=5).json()


def test_bodies_past_body_memory_bytes_are_refused_at_once_unread(
    sink: S3Sink, tmp_path: Path
) -> None:
    """Bounded memory however many large bodies arrive together: what does not fit in
    BODY_MEMORY_BYTES is answered 503 before its body is read, the rest go on."""
    env = sink_env(
        sink,
        tmp_path / "spool",
        SERVER="granian",
        MAX_BODY_BYTES=str(100_000),
        BODY_MEMORY_BYTES=str(250_000),  # two bodies of 100,000 fit, a third does not
    )
    service = ServiceProcess(env).start()
    try:
        socks = []
        for _ in range(3):  # three large bodies, each trickling: two fit, one does not
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            sock.sendall(head(100_000) + b" " * 1000)
            socks.append(sock)
        refused, held = [], []
        for sock in socks:
            sock.settimeout(2)
            try:
                refused.append(sock.recv(65536))
            except TimeoutError:  # still reading its body: answered nothing
                held.append(sock)
        assert len(refused) == 1 and len(held) == 2, refused
        assert refused[0].startswith(b"HTTP/1.1 503"), refused[0][:200]
        assert b"BODY_MEMORY_BYTES" in refused[0]
        small = requests.post(service.url + "/payloads", data=BODY, timeout=5, headers=JSON_TYPE)
        assert small.status_code == 202  # a small body still fits beside them
        for sock in socks:
            sock.close()
        # Their memory is given back: two more large bodies are read (and refused as JSON).
        for _ in range(2):
            answer = requests.post(
                service.url + "/payloads", data=b" " * 100_000, timeout=5, headers=JSON_TYPE
            )
            assert answer.status_code == 400, answer.text
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert sink.payload_count() == 40


JSON_TYPE = {"Content-Type": "application/json"}
