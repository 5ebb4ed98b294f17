"""Slowloris, under each server: 3,000 connections trickling headers and 500 trickling bodies
at a byte a second, while a normal client posts. The normal client must get at least 95 % of
its posts answered within 2 s, and each serving process must stay under 200 MB, during the
attack and after it. Bounded: about 10 s of attack and 6 s of watching per server."""

from __future__ import annotations

import multiprocessing
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.support import ServiceProcess, sink_env

HEADER_TRICKLERS = 3000
BODY_TRICKLERS = 500
ATTACK_SECONDS = 10  # two rounds of HEADER_TIMEOUT=5: the closed tricklers come back
MAX_RSS_MIB = 200
# After the attack RSS must stay under the bound and grow no further. It does not all come
# back: granian keeps most of what the connections took (measured: 72 -> ~135 -> 110-140 MiB).
SETTLED_MIB = 8


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree(pid: int) -> list[int]:
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid] + [p for kid in kids for p in tree(int(kid))]


class Attacker:
    """Keeps the tricklers open (reopening those the server closes), a byte a second each.

    Runs in its own process, so the normal client does not compete with it for the GIL.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = multiprocessing.Event()
        self.headers: list[socket.socket | None] = [None] * HEADER_TRICKLERS
        self.bodies: list[socket.socket | None] = [None] * BODY_TRICKLERS
        self.reopened = 0

    def _open(self, prefix: bytes) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            sock.setblocking(False)
            sock.send(prefix)
            return sock
        except OSError:
            return None

    def run(self) -> None:
        header_prefix = b"POST /payloads HTTP/1.1\r\nHost: x\r\n"
        body_prefix = (
            b"POST /payloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{"
        )
        try:
            self._trickle(header_prefix, body_prefix)
        finally:
            self.close()

    def _trickle(self, header_prefix: bytes, body_prefix: bytes) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            for group, prefix, byte in (
                (self.headers, header_prefix, b"X"),
                (self.bodies, body_prefix, b" "),
            ):
                for index, sock in enumerate(group):
                    if self.stop.is_set():
                        return
                    try:
                        if sock is None:
                            raise OSError
                        sock.send(byte)
                    except OSError:
                        if sock is not None:
                            sock.close()
                            self.reopened += 1
                        group[index] = self._open(prefix)
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def close(self) -> None:
        self.stop.set()
        for sock in self.headers + self.bodies:
            if sock is not None:
                sock.close()


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_slow_clients_do_not_shut_out_a_normal_client(sink, tmp_path, server: str) -> None:
    # Two serving processes, as deployed on this 2-core machine (WEB_CONCURRENCY = cores).
    env = sink_env(sink, tmp_path / "spool", SERVER=server, WEB_CONCURRENCY="2", HEADER_TIMEOUT="5")
    service = ServiceProcess(env).start()
    assert service.proc is not None
    attacker = Attacker(service.port)
    process = multiprocessing.get_context("fork").Process(target=attacker.run, daemon=True)
    answered = asked = 0
    peak = 0.0
    latencies: list[float] = []
    try:
        base = max(rss_mib(pid) for pid in tree(service.proc.pid))
        process.start()
        time.sleep(3)  # the attack is in place
        ends = time.monotonic() + ATTACK_SECONDS
        body = {"version": "1", "token": "t", "data": [{"n": 1}]}
        while time.monotonic() < ends:
            asked += 1
            started = time.monotonic()
            try:
                answer = requests.post(service.url + "/payloads", json=body, timeout=2)
                answered += answer.status_code == 202 and time.monotonic() - started < 2
            except requests.RequestException:
                pass
            latencies.append(round(time.monotonic() - started, 2))
            peak = max(peak, *(rss_mib(pid) for pid in tree(service.proc.pid)))
            time.sleep(0.1)
    finally:
        attacker.stop.set()
        process.join(10)
        if process.is_alive():
            process.kill()
    try:
        report = f"{answered} of {asked} answered within 2 s; latencies {latencies}"
        print(f"{server}: {answered}/{asked} answered, RSS base {base:.0f} peak {peak:.0f} MiB")
        assert asked >= 50, report
        assert answered >= 0.95 * asked, report
        assert peak < MAX_RSS_MIB, f"peak RSS {peak:.0f} MiB"
        after = []
        for _ in range(6):  # the six seconds after the attack: nothing keeps growing
            time.sleep(1)
            after.append(max(rss_mib(pid) for pid in tree(service.proc.pid)))
        print(f"{server}: RSS after the attack {after[0]:.0f} -> {after[-1]:.0f} MiB")
        assert max(after) < MAX_RSS_MIB, f"RSS after the attack {after}"
        assert after[-1] <= after[0] + SETTLED_MIB, f"RSS still growing after the attack {after}"
    finally:
        code, log = service.stop(timeout=30)
    assert code == 0, log
