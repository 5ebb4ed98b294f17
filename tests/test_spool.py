"""The dead-letter spool: durable writes, replay that keeps only what still fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store import S3Object
from store.spool import DeadLetterSpool


def objects(n: int, prefix: str = "k") -> list[S3Object]:
    return [S3Object(f"{prefix}{i}", f'{{"n":{i}}}'.encode(), 1) for i in range(n)]


def test_written_objects_come_back_byte_for_byte(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path)
    binary = S3Object("batch", bytes(range(256)), 40)
    spool.write([*objects(3), binary], reason="test")
    assert len(spool.files()) == 1
    assert spool.size() == (4, 43)
    got: list[S3Object] = []
    result = spool.replay(got.append)
    assert got == [*objects(3), binary]
    assert (result.landed, result.failed, result.files) == (43, 0, 1)
    assert spool.files() == []
    assert list(tmp_path.iterdir()) == []  # no temporary or claimed file left behind


def test_replay_keeps_exactly_what_failed(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path)
    spool.write(objects(5), reason="test")
    landed: list[str] = []

    def flaky(obj: S3Object) -> None:
        if obj.key in ("k1", "k3"):
            raise ConnectionError("still down")
        landed.append(obj.key)

    result = spool.replay(flaky)
    assert landed == ["k0", "k2", "k4"]
    assert (result.landed, result.failed) == (3, 2)
    assert spool.size() == (2, 2)
    again: list[str] = []
    spool.replay(lambda obj: again.append(obj.key))
    assert sorted(again) == ["k1", "k3"]
    assert spool.size() == (0, 0)


def test_a_file_claimed_by_a_dead_replayer_is_replayed(tmp_path: Path) -> None:
    spool = DeadLetterSpool(tmp_path)
    path = spool.write(objects(2), reason="test")
    assert path is not None
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that is certainly no longer running
    os.rename(path, path.with_name(f"{path.name}.replaying-{pid}"))
    assert spool.files() == []
    got: list[str] = []
    spool.replay(lambda obj: got.append(obj.key))
    assert got == ["k0", "k1"]


def test_an_unwritable_spool_dir_fails_at_prepare(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match=r"SPOOL_DIR=.* is not a writable directory"):
        DeadLetterSpool(blocker / "spool").prepare()
