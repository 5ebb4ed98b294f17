from __future__ import annotations

import os
import threading
import time

import pytest

from actors.ids import new_id
from store import ObjectKey, sanitise_version


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.2.3", "1.2.3"),
        ("../../etc/passwd", "etc_passwd"),
        ("..", "unknown"),
        ("", "unknown"),
        ("a/b\\c d", "a_b_c_d"),
        ("v\x00\n1", "v_1"),
        ("ünïcode-✓", "n_code"),
    ],
)
def test_hostile_versions_cannot_shape_the_key(version: str, expected: str) -> None:
    assert sanitise_version(version) == expected


def test_a_huge_version_is_cut_short() -> None:
    assert len(sanitise_version("v" * 10_000)) == 64


def test_key_is_time_partitioned_and_carries_the_version() -> None:
    moment = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, 0)) - time.timezone
    key = str(ObjectKey("payloads/", "../2.0/../", moment, "abc"))
    assert key == f"payloads/dt=2026-03-04/hour=05/version=2.0/{int(moment * 1000)}-abc.json"
    assert ".." not in key.split("/")
    assert key.count("/") == 4


def test_the_same_facts_give_the_same_key_so_a_retry_overwrites() -> None:
    first = ObjectKey("p/", "1", 1_700_000_000.123, "id1")
    assert str(first) == str(ObjectKey("p/", "1", 1_700_000_000.123, "id1"))


def test_ids_are_unique_across_many_threads() -> None:
    per_thread, threads = 5_000, 16
    results: list[list[str]] = [[] for _ in range(threads)]

    def draw(slot: int) -> None:
        results[slot].extend(new_id() for _ in range(per_thread))

    workers = [threading.Thread(target=draw, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    everything = [i for batch in results for i in batch]
    assert len(everything) == per_thread * threads
    assert len(set(everything)) == len(everything)


def test_ids_differ_between_a_process_and_its_forked_child() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report a few ids and leave at once
        os.close(read_end)
        os.write(write_end, ",".join(new_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write_end)
    parent_ids = {new_id() for _ in range(100)}
    with os.fdopen(read_end) as pipe:
        child_ids = set(pipe.read().split(","))
    os.waitpid(pid, 0)
    assert len(child_ids) == 100
    assert not parent_ids & child_ids
