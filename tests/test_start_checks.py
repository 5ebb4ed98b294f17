"""What an operator meets at start: S3 checked, probes that fit orchestrators, a CLI that
explains itself and exits with documented codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench.s3sink import S3Sink
from mailroom import __version__
from tests.support import ROOT, ServiceProcess, free_port, sink_env, wait_for


def mailroom(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "mailroom", *args],
        cwd=ROOT,
        env={**os.environ, "LOG_FORMAT": "text", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def nowhere_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """A bucket at an endpoint where nothing listens (yet)."""
    return {
        "S3_BUCKET": "sink",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SPOOL_DIR": str(tmp_path / "spool"),
        **extra,
    }


def test_strict_s3_check_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    result = mailroom("serve", env={**nowhere_env(tmp_path, port), "S3_CHECK": "strict"})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("mailroom:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"mailroom: cannot start: S3 check failed: cannot write to s3://sink/payloads/ at "
        f"http://127.0.0.1:{port} ("
    )
    assert "Traceback" not in result.stderr


def test_warn_starts_unready_until_s3_takes_writes(tmp_path: Path) -> None:
    port = free_port()
    service = ServiceProcess(nowhere_env(tmp_path, port)).start()  # S3_CHECK=warn, the default
    sink = None
    try:
        assert "cannot write to s3://sink/payloads/" in service.log()
        ready = requests.get(service.url + "/readyz", timeout=5)
        assert ready.status_code == 503
        assert any("S3 does not take writes" in r for r in ready.json()["reasons"])
        assert requests.get(service.url + "/livez", timeout=5).status_code == 200
        health = requests.get(service.url + "/healthz", timeout=5).json()
        assert health["s3"]["reachable"] is False and health["s3"]["error"]
        sink = S3Sink(latency_ms=1).serve_in_thread(port=port)  # S3 comes up

        def ready_again() -> bool:
            return requests.get(service.url + "/readyz", timeout=5).status_code == 200

        wait_for(ready_again, timeout=20, interval=0.5)  # rechecked without any traffic
        assert "S3 check: writing works again" in service.log()
        body = {"version": "1", "token": "t", "data": [{"n": 1}]}
        assert requests.post(service.url + "/payloads", json=body, timeout=5).status_code == 202
        wait_for(lambda: sink.payload_count() >= 1, timeout=20, interval=0.2)
    finally:
        code, log = service.stop()
        if sink is not None:
            sink.stop()
    assert code == 0, log


def test_liveness_stays_up_while_readiness_goes_down_during_the_drain(
    sink: S3Sink, tmp_path: Path
) -> None:
    sink.hang_for(30)  # uploads stall: the drain takes a while
    env = sink_env(sink, tmp_path / "spool", SHUTDOWN_TIMEOUT="6", SERVER="waitress")
    service = ServiceProcess(env).start()
    try:
        assert requests.get(service.url + "/readyz", timeout=5).status_code == 200
        body = {"version": "1", "token": "t", "data": [{"n": 1}]}
        assert requests.post(service.url + "/payloads", json=body, timeout=5).status_code == 202
        assert service.proc is not None
        service.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # waitress answers for 1 s after the signal, then closes its socket
        ready = requests.get(service.url + "/readyz", timeout=5)
        live = requests.get(service.url + "/livez", timeout=5)
        assert ready.status_code == 503 and "draining: shutting down" in ready.json()["reasons"]
        assert live.status_code == 200 and live.json() == {"alive": True, "gave_up": None}
    finally:
        sink.reset_faults()
        code, log = service.stop(signal_it=False)
    assert code == 0, log


def test_version_and_help_name_the_environment() -> None:
    assert mailroom("--version").stdout.strip() == f"mailroom {__version__}"
    for command, variable in [
        ("serve", "SHUTDOWN_TIMEOUT"),
        ("list", "S3_BUCKET"),
        ("replay", "--concurrency"),
        ("replay", "SPOOL_DIR"),
        ("spool", "SPOOL_DIR"),
    ]:
        shown = mailroom(command, "--help")
        assert shown.returncode == 0
        assert variable in shown.stdout, (command, shown.stdout)
    top = mailroom("--help").stdout
    assert "Exit codes: 0 done; 1 failed while running" in top


def test_a_port_in_use_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = mailroom(
            "serve", env={"PORT": str(port), "HOST": "127.0.0.1", "SPOOL_DIR": str(tmp_path)}
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mailroom: cannot start: PORT={port} is already in use on 127.0.0.1: stop what "
        "listens there or set PORT to a free port"
    ]


def test_list_without_a_running_embedded_store_says_what_to_do(tmp_path: Path) -> None:
    result = mailroom("list", env={"EMBEDDED_S3_PORT": str(free_port())}, timeout=120)
    assert result.returncode == 1
    assert "lives inside a running `mailroom serve` (`make run`)" in result.stderr
    assert "Traceback" not in result.stderr
