"""`mailroom replay` and `mailroom spool` as an operator runs them, against the S3 stand-in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.s3sink import S3Sink
from store import S3Object
from store.spool import DeadLetterSpool, Destination
from tests.support import ROOT, ServiceProcess, free_port, sink_destination, sink_env, wait_for


def fill(spool: DeadLetterSpool, files: int, per_file: int) -> set[str]:
    keys = set()
    for file in range(files):
        batch = [
            S3Object(f"payloads/old/{file}-{i}.json", b'{"n":%d}' % i) for i in range(per_file)
        ]
        spool.write(batch, reason="an earlier outage")
        keys |= {obj.key for obj in batch}
    return keys


def mailroom(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailroom", *args],
        cwd=ROOT,
        env={**os.environ, "LOG_FORMAT": "text", "LOG_LEVEL": "INFO", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_replay_shows_progress_and_exact_totals(sink: S3Sink, tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    keys = fill(spool, files=4, per_file=100)
    sink.latency = 0.03
    replaying = mailroom(sink_env(sink, spool.directory), "replay", "--concurrency", "16")
    out, err = replaying.communicate(timeout=60)
    assert replaying.returncode == 0, out + err
    assert set(sink.objects) == keys
    assert spool.files() == []
    # Not a terminal: log lines, the first at once, then the final totals on stdout.
    assert "replay: 400 object(s) holding 400 payload(s) in 4 file(s) waiting" in err
    assert "(16 at a time): 400 object(s) holding 400 payload(s) landed; 0 object(s)" in out
    assert "0 unreadable line(s)" in out


def test_a_killed_replay_rerun_lands_everything(sink: S3Sink, tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    keys = fill(spool, files=6, per_file=50)
    sink.latency = 0.05
    env = sink_env(sink, spool.directory)
    first = mailroom(env, "replay", "--concurrency", "2")
    wait_for(lambda: len(sink.objects) >= 20, timeout=30)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    assert len(sink.objects) < len(keys)  # it really was cut off half way
    claimed = [p for p in spool.directory.iterdir() if ".replaying-" in p.name]
    assert claimed, "the killed replayer held a claimed file"

    sink.latency = 0.002
    second = mailroom(env, "replay")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, out + err
    assert set(sink.objects) == keys  # each key stored, those of the killed file overwritten
    assert list(spool.directory.glob("*.spool*")) == []


def test_replay_exits_1_and_keeps_what_still_fails(sink: S3Sink, tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    keys = fill(spool, files=2, per_file=10)
    sink.go_down_for(60)
    env = sink_env(sink, spool.directory, UPLOAD_RETRY_SECONDS="0.2")
    replaying = mailroom(env, "replay")
    out, err = replaying.communicate(timeout=60)
    assert replaying.returncode == 1, out + err
    assert "0 object(s) holding 0 payload(s) landed; 20 object(s) holding 20 payload(s) " in out
    assert spool.census().objects == len(keys)


def test_spool_command_says_what_waits(sink: S3Sink, tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    spool.write(
        [S3Object("a", b"x", 3), S3Object("b", b"y", 4)],
        reason="test",
        spooled_at=time.time_ns() - 120 * 10**9,
    )
    listing = mailroom(sink_env(sink, spool.directory), "spool")
    out, err = listing.communicate(timeout=30)
    assert listing.returncode == 0, out + err
    fields = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert (fields["files"], fields["objects"], fields["payloads"]) == ("1", "2", "7")
    assert int(fields["bytes"]) == spool.files()[0].stat().st_size
    assert 119 <= int(fields["oldest"].removesuffix(" s")) < 180


def test_objects_spooled_for_the_embedded_store_never_go_to_a_real_bucket(
    sink: S3Sink, tmp_path: Path
) -> None:
    """Spooled during `make run` (embedded store), replayed by a process with S3_BUCKET set:
    left in place, logged, never uploaded, never deleted."""
    embedded = Destination("embedded", "mailroom", "payloads/")
    spool = DeadLetterSpool(tmp_path / "spool", embedded)
    spool.write([S3Object("payloads/dev/1.json", b'{"dev":1}')], reason="development")
    (left,) = spool.files()
    replaying = mailroom(sink_env(sink, spool.directory), "replay")
    out, err = replaying.communicate(timeout=60)
    assert replaying.returncode == 0, out + err
    assert sink.objects == {}
    assert spool.files() == [left] and left.exists()  # untouched
    assert (
        f"left {left.name} in the spool: its objects were spooled for "
        "s3://mailroom/payloads/ at embedded" in err
    )
    assert "1 file(s) for another destination left in place" in out
    listing = mailroom(sink_env(sink, spool.directory), "spool")
    shown, _ = listing.communicate(timeout=30)
    assert "elsewhere         1 object(s) for s3://mailroom/payloads/ at embedded" in shown


def test_objects_spooled_for_a_real_bucket_never_go_to_the_embedded_store(
    sink: S3Sink, tmp_path: Path
) -> None:
    """Accepted (202) and spooled while pointed at a bucket; then a plain `make run` (no
    S3_BUCKET, the embedded in-memory store) starts on the same SPOOL_DIR: it must not replay
    them there, where they would vanish at exit, nor delete the file."""
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    spool.write([S3Object("payloads/prod/1.json", b'{"prod":1}')], reason="S3 outage")
    (left,) = spool.files()
    service = ServiceProcess(
        {"SPOOL_DIR": str(spool.directory), "EMBEDDED_S3_PORT": str(free_port())}
    ).start()
    try:
        wait_for(lambda: "replay_elsewhere" in service.log(), timeout=20)
    finally:
        code, log = service.stop()
    assert code == 0, log
    assert left.exists() and spool.files() == [left]
    assert (
        f"spooled for s3://sink/payloads/ at {sink.endpoint}, not for "
        "s3://mailroom/payloads/ at embedded" in log
    )
    # ...and the process configured for that bucket replays it there.
    replaying = mailroom(sink_env(sink, spool.directory), "replay")
    out, err = replaying.communicate(timeout=60)
    assert replaying.returncode == 0, out + err
    assert set(sink.objects) == {"payloads/prod/1.json"}
    assert spool.files() == []


def test_any_destination_replays_elsewhere_on_purpose(sink: S3Sink, tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path / "spool", Destination("aws", "old-bucket", "in/"))
    spool.write([S3Object("in/1.json", b"{}")], reason="test")
    replaying = mailroom(sink_env(sink, spool.directory), "replay", "--any-destination")
    out, err = replaying.communicate(timeout=60)
    assert replaying.returncode == 0, out + err
    assert set(sink.objects) == {"in/1.json"} and spool.files() == []


def test_replay_retries_what_s3_throttles(sink: S3Sink, tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path / "spool", sink_destination(sink))
    keys = fill(spool, files=4, per_file=50)
    sink.fail_share(0.1)  # one PUT in ten: 503 SlowDown
    replaying = mailroom(sink_env(sink, spool.directory), "replay")
    out, err = replaying.communicate(timeout=60)
    assert replaying.returncode == 0, out + err
    assert set(sink.objects) == keys and sink.stats.failed_puts > 5
    assert spool.files() == []
