"""`mailroom replay` against the S3 stand-in at 30 ms: a full spool with default settings, and a
small one replayed one object at a time (`--concurrency 1`, as replay was before) to compare.

Starts the S3 sink (30 ms per PUT) in its own process, writes single-payload objects into a
fresh temporary spool directory (files of 100 objects, as `DeadLetterSpool.write` writes them),
runs `python -m mailroom replay` as an operator would (the service's environment, no
MAX_WORKERS, no --concurrency), and times it from start to exit, interpreter start included.
Then checks, from the sink's `/_stats`, that every spooled payload arrived, and that no
`*.spool` file is left. Prints each run's seconds and objects/s, the ratio of the two, and
issue 10's target (5,000 objects in at most 10 s) as met or missed.
`python -m bench.replay`; `make bench` runs it after `bench.run`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import requests

from bench.results import verdict_text
from bench.run import start_sink
from bench.scenarios import NOT_INHERITED, ROOT, SINK_ENV
from config import Settings
from mailroom.wiring import destination_of
from store.objects import S3Object
from store.spool import DeadLetterSpool

LATENCY_MS = 30.0
OBJECTS = 5_000
SEQUENTIAL_OBJECTS = 300  # ~31 ms each one after the other: ~10 s
PER_FILE = 100
TARGET_SECONDS = 10.0
LANDED = re.compile(r"(\d+) object\(s\) holding (\d+) payload\(s\) landed")


@dataclass
class Replayed:
    objects: int
    seconds: float  # wall time of `mailroom replay`, start to exit
    cpu_seconds: float  # user + system CPU of the `mailroom replay` process
    exit_code: int
    summary: str  # its final `replayed ...` line ("" if it printed none)
    landed: int  # payloads the sink counted during the run
    failed_puts: int  # PUTs the sink refused during the run (none expected)
    left: list[str]  # spool files (or claimed/temporary ones) left behind

    @property
    def rate(self) -> float:
        return self.objects / self.seconds

    @property
    def complete(self) -> bool:
        return self.exit_code == 0 and self.landed == self.objects and not self.left


def sink_stats(endpoint: str) -> dict[str, int]:
    return requests.get(endpoint + "/_stats", timeout=5).json()


def fill_spool(directory: Path, count: int, key_prefix: str, sink: str) -> None:
    """`count` single-payload objects in files of PER_FILE, as the service would spool them
    while uploading to the sink (the destination `mailroom replay` will check)."""
    settings = Settings.from_env({**SINK_ENV, "AWS_ENDPOINT_URL_S3": sink})
    spool = DeadLetterSpool(directory, destination_of(settings))
    for start in range(0, count, PER_FILE):
        objects = [
            S3Object(
                f"{key_prefix}/{i}.json",
                orjson.dumps(
                    {"device": f"sensor-{i % 1000:04d}", "temp": 21.5, "ts": 1732800000 + i}
                ),
            )
            for i in range(start, min(start + PER_FILE, count))
        ]
        spool.write(objects, reason="bench.replay")


def run_replay(
    sink: str, spool_dir: Path, objects: int, extra: list[str], timeout: float
) -> Replayed:
    """`python -m mailroom replay [extra]` over `spool_dir` into the sink, timed."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env |= SINK_ENV | {"AWS_ENDPOINT_URL_S3": sink, "SPOOL_DIR": str(spool_dir)}
    before = sink_stats(sink)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mailroom", "replay", *extra],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        exit_code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:  # run() has killed it
        exit_code, stdout, stderr = -1, _text(expired.stdout), _text(expired.stderr)
        stderr += f"\n(killed after {timeout:.0f} s)"
    seconds = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = sink_stats(sink)
    summary = next(
        (line for line in reversed(stdout.splitlines()) if line.startswith("replayed ")), ""
    )
    if exit_code or not summary:
        print(f"mailroom replay {' '.join(extra)} exited {exit_code}:", file=sys.stderr)
        print(stdout + stderr, file=sys.stderr)
    left = sorted(
        path.name
        for path in spool_dir.iterdir()
        if path.name.endswith(".spool") or ".replaying-" in path.name
    )
    return Replayed(
        objects=objects,
        seconds=seconds,
        cpu_seconds=(cpu_after.ru_utime - cpu_before.ru_utime)
        + (cpu_after.ru_stime - cpu_before.ru_stime),
        exit_code=exit_code,
        summary=summary,
        landed=after["payloads"] - before["payloads"],
        failed_puts=after["failed_puts"] - before["failed_puts"],
        left=left,
    )


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def cpu_note(r: Replayed) -> str:
    return (
        f"the replay process used {r.cpu_seconds:.1f} s of CPU, its start included "
        f"({r.cpu_seconds / r.seconds:.0%} of one core, {r.cpu_seconds / r.objects * 1e3:.2f} ms "
        "per object)"
    )


def landed_line(tag: str, r: Replayed) -> str:
    """The correctness check of one run, said as met or missed."""
    reported = LANDED.search(r.summary)
    said = (
        f"; replay said {reported[1]} object(s), {reported[2]} payload(s) landed"
        if reported
        else "; replay printed no totals"
    )
    ok = r.complete and reported is not None and int(reported[2]) == r.objects
    return (
        f"{verdict_text(ok)} {tag} landed every spooled payload: {r.objects} spooled / "
        f"{r.landed} landed, {len(r.left)} spool file(s) left, exit {r.exit_code}{said}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    logging.getLogger("store.spool").setLevel(logging.ERROR)  # a warning per file written
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="replay-bench-")))
        sink = start_sink(stack, LATENCY_MS)
        full, sequential = scratch / "spool", scratch / "spool-sequential"
        fill_spool(full, OBJECTS, "payloads/replay-bench", sink)
        fill_spool(sequential, SEQUENTIAL_OBJECTS, "payloads/replay-bench-sequential", sink)
        print(f"replay: {OBJECTS} objects, defaults", file=sys.stderr)
        defaults = run_replay(sink, full, OBJECTS, [], timeout=120)
        print(f"replay: {SEQUENTIAL_OBJECTS} objects, --concurrency 1", file=sys.stderr)
        one = run_replay(sink, sequential, SEQUENTIAL_OBJECTS, ["--concurrency", "1"], 60)
    for r in (defaults, one):
        if r.summary:
            print(f"  {r.summary}", file=sys.stderr)
    width = Settings().max_workers  # what replay runs at when given no MAX_WORKERS
    print()
    print(
        f"replay, {OBJECTS:,} objects, S3 at {LATENCY_MS:g} ms, defaults: "
        f"{defaults.seconds:.1f} s, {defaults.rate:.0f} objects/s"
    )
    print(
        f"  {width} at a time (MAX_WORKERS' default): at least "
        f"{OBJECTS / width * LATENCY_MS / 1000:.1f} s of S3 latency alone; {cpu_note(defaults)}"
    )
    print(
        f"replay, {SEQUENTIAL_OBJECTS:,} objects, S3 at {LATENCY_MS:g} ms, --concurrency 1 "
        f"(sequential, as before): {one.seconds:.1f} s, {one.rate:.0f} objects/s"
    )
    print(
        f"  1 at a time: at least {SEQUENTIAL_OBJECTS * LATENCY_MS / 1000:.1f} s of S3 latency "
        f"alone; {cpu_note(one)}"
    )
    print(
        f"replay with defaults: {defaults.rate / one.rate:.1f}x the sequential replay's "
        "objects/s (each timed from start to exit, interpreter start included)"
    )
    print()
    print(
        f"{verdict_text(defaults.complete and defaults.seconds <= TARGET_SECONDS)} replay of "
        f"{OBJECTS:,} objects with default settings in at most {TARGET_SECONDS:g} s: "
        f"{defaults.seconds:.1f} s"
    )
    print(landed_line("replay with defaults", defaults))
    print(landed_line("sequential replay", one))
    for tag, r in (("defaults", defaults), ("sequential", one)):
        if r.failed_puts:
            print(f"note: the sink refused {r.failed_puts} PUT(s) during the {tag} replay")
    print(f"\nthis run took {time.monotonic() - started:.0f} s of wall time")
    if not (defaults.summary and one.summary) or defaults.exit_code or one.exit_code:
        sys.exit(1)


if __name__ == "__main__":
    main()
