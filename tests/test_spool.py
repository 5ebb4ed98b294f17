"""The dead-letter spool: durable writes, replay in parallel that keeps only what still fails,
and damage (torn writes, corrupt lines, dead replayers) contained."""

from __future__ import annotations

import collections
import io
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from mailroom.progress import ReplayProgress
from store import S3Object
from store.replay import replay
from store.spool import DeadLetterSpool
from tests.support import ANYWHERE


def objects(n: int, prefix: str = "k") -> list[S3Object]:
    return [S3Object(f"{prefix}{i}", f'{{"n":{i}}}'.encode(), 1) for i in range(n)]


class Recorder:
    """A put that records every key it was given, from any thread."""

    def __init__(self, fail: set[str] | None = None, delay: float = 0.0) -> None:
        self.keys: list[str] = []
        self.bodies: dict[str, bytes] = {}
        self.fail = fail or set()
        self.delay = delay
        self.in_flight = self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, obj: S3Object) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.delay)
            if obj.key in self.fail:
                raise ConnectionError("still down")
            with self._lock:
                self.keys.append(obj.key)
                self.bodies[obj.key] = obj.body
        finally:
            with self._lock:
                self.in_flight -= 1


def test_written_objects_come_back_byte_for_byte(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    binary = S3Object("batch", bytes(range(256)), 40)
    spool.write([*objects(3), binary], reason="test")
    assert len(spool.files()) == 1
    census = spool.census()
    assert (census.files, census.objects, census.payloads) == (1, 4, 43)
    put = Recorder()
    tally = replay(spool, put, concurrency=4)
    assert sorted(put.keys) == ["batch", "k0", "k1", "k2"]
    assert put.bodies["batch"] == bytes(range(256))
    assert (tally.landed, tally.failed, tally.files, tally.objects_landed) == (43, 0, 1, 4)
    assert spool.files() == []
    assert list(tmp_path.iterdir()) == []  # no temporary or claimed file left behind


def test_replay_uploads_in_parallel_and_each_object_once(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    for file in range(20):
        spool.write(objects(25, prefix=f"f{file}-"), reason="test")
    put = Recorder(delay=0.01)
    tally = replay(spool, put, concurrency=8)
    assert tally.objects_landed == 500 and tally.files == 20
    assert put.peak == 8  # as wide as asked, and no wider
    counts = collections.Counter(put.keys)
    assert len(counts) == 500 and set(counts.values()) == {1}
    assert spool.files() == []


def test_replay_keeps_exactly_what_failed_with_its_age(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    written = spool.write(objects(5), reason="test")
    assert written is not None
    first_spooled = written.name.split("-")[0]
    put = Recorder(fail={"k1", "k3"})
    tally = replay(spool, put, concurrency=3)
    assert sorted(put.keys) == ["k0", "k2", "k4"]
    assert (tally.landed, tally.failed) == (3, 2)
    assert spool.census().objects == 2
    (kept,) = spool.files()
    assert kept.name.split("-")[0] == first_spooled  # the oldest object's age stays true
    again = Recorder()
    replay(spool, again, concurrency=3)
    assert sorted(again.keys) == ["k1", "k3"]
    assert spool.census().objects == 0


def test_two_replayers_at_once_upload_each_object_once(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    for file in range(30):
        spool.write(objects(10, prefix=f"f{file}-"), reason="test")
    put = Recorder(delay=0.002)
    replayers = [
        threading.Thread(
            target=replay,
            args=(DeadLetterSpool(tmp_path, ANYWHERE), put),
            kwargs={"concurrency": 4},
        )
        for _ in range(2)
    ]
    for thread in replayers:
        thread.start()
    for thread in replayers:
        thread.join(timeout=30)
    counts = collections.Counter(put.keys)
    assert len(counts) == 300 and set(counts.values()) == {1}
    assert spool.files() == []


def dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that is certainly no longer running
    return pid


def test_a_file_claimed_by_a_dead_replayer_is_replayed(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    path = spool.write(objects(2), reason="test")
    assert path is not None
    os.rename(path, path.with_name(f"{path.name}.replaying-{dead_pid()}"))
    assert spool.files() == []
    put = Recorder()
    replay(spool, put, concurrency=2)
    assert sorted(put.keys) == ["k0", "k1"]


def test_a_torn_write_is_never_read_and_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    spool.write(objects(3), reason="test")
    torn = tmp_path / f".tmp-{time.time_ns()}-{dead_pid()}-abcd.spool"
    torn.write_bytes(b'{"key":"half","body":"eyJu')  # the disk filled half way through
    assert len(spool.files()) == 1
    put = Recorder()
    with caplog.at_level(logging.ERROR):
        tally = replay(spool, put, concurrency=2)
    assert sorted(put.keys) == ["k0", "k1", "k2"] and tally.failed == 0
    assert not torn.exists()
    assert (
        (tmp_path / "quarantine" / torn.name.removeprefix("."))
        .read_bytes()
        .startswith(b'{"key":"half"')
    )
    assert "never finished (torn)" in caplog.text


def test_a_corrupt_line_is_quarantined_and_the_rest_replays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    path = spool.write(objects(4), reason="test")
    assert path is not None
    lines = path.read_bytes().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # torn JSON
    lines.insert(3, b'{"key":"x","body":"not base64!","payloads":1}')
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert spool.census().objects == 3  # counted as replay will find them: the bad ones not
    put = Recorder()
    with caplog.at_level(logging.ERROR):
        tally = replay(spool, put, concurrency=2)
    assert sorted(put.keys) == ["k0", "k2", "k3"]
    assert tally.quarantined == 2 and tally.failed == 0
    quarantined = (tmp_path / "quarantine" / f"{path.name}.bad").read_bytes().splitlines()
    assert quarantined == [lines[1], lines[3]]
    assert spool.files() == []
    assert f"spool file {path.name}: 2 line(s) could not be read (line 2, 4)" in caplog.text


def test_census_and_footprint_say_what_waits_and_how_old(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    assert spool.footprint().oldest_age is None
    spool.write(objects(2), reason="test", spooled_at=time.time_ns() - 90 * 10**9)
    spool.write([S3Object("batch", b"x" * 10, 7)], reason="test")
    census = spool.census()
    assert (census.files, census.objects, census.payloads) == (2, 3, 9)
    assert census.bytes == sum(path.stat().st_size for path in spool.files())
    assert 89 <= (census.oldest_age or 0) < 120
    footprint = spool.footprint()
    assert (footprint.files, footprint.bytes) == (2, census.bytes)
    assert 89 <= (footprint.oldest_age or 0) < 120


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    spool.write(objects(40), reason="test")
    terminal = Terminal()
    progress = ReplayProgress(spool.census(), stream=terminal)
    replay(spool, Recorder(), concurrency=4, progress=progress)
    progress.close()
    shown = terminal.getvalue()
    assert "replaying" in shown and "40/40" in shown and "obj/s" in shown


def test_progress_is_log_lines_elsewhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    spool.write(objects(10), reason="test")
    ticks = iter(range(0, 1000, 3))  # each reading of the clock is 3 s later
    with caplog.at_level(logging.INFO, logger="mailroom"):
        progress = ReplayProgress(
            spool.census(), stream=io.StringIO(), interval=5, clock=lambda: next(ticks)
        )
        replay(spool, Recorder(), concurrency=1, progress=progress)
    events = [r for r in caplog.records if getattr(r, "event", "").startswith("replay_")]
    assert events[0].event == "replay_started" and events[0].objects == 10
    lines = [r for r in events if r.event == "replay_progress"]
    assert 3 <= len(lines) <= 5  # every other object at 3 s a tick and 5 s apart
    last = lines[-1]
    assert last.objects_total == 10 and last.payloads_failed == 0
    assert last.rate_per_s > 0 and last.eta_s is not None
    assert "of 10 object(s) done" in last.getMessage()


def test_an_unwritable_spool_dir_fails_at_prepare(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match=r"SPOOL_DIR=.* is not a writable directory"):
        DeadLetterSpool(blocker / "spool", ANYWHERE).prepare()


def test_a_claim_left_unlocked_is_taken_back_even_if_its_pid_was_reused(tmp_path: Path) -> None:
    """Containers reuse pids: a claim is judged by its lock, not by whether its pid lives."""
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    path = spool.write(objects(3), reason="test")
    assert path is not None
    stranded = path.with_name(f"{path.name}.replaying-1")  # pid 1 is always alive
    os.rename(path, stranded)
    census = spool.census()
    assert (census.objects, spool.footprint().files) == (3, 1)  # counted while claimed
    put = Recorder()
    replay(spool, put, concurrency=2)
    assert sorted(put.keys) == ["k0", "k1", "k2"]
    assert list(tmp_path.iterdir()) == []


def test_a_live_replayers_claim_is_left_alone(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    path = spool.write(objects(2), reason="test")
    assert path is not None
    claimed = spool.claim(path)  # held, as by another replayer still running
    assert claimed is not None
    other = DeadLetterSpool(tmp_path, ANYWHERE)
    assert other.reclaim_abandoned() == 0 and claimed.path.exists()
    spool.release(claimed, [])
    assert list(tmp_path.iterdir()) == []


def test_a_directory_named_like_a_spool_file_is_not_a_crash(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path, ANYWHERE)
    (tmp_path / "odd.spool").mkdir()
    spool.write(objects(1), reason="test")
    assert spool.census().objects == 1
    put = Recorder()
    replay(spool, put, concurrency=1)
    assert put.keys == ["k0"]
