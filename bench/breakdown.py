"""Where a request's CPU goes, part by part: the batched granian row, under a profiler.

Runs `mailroom serve` with the batched settings under granian (2 workers) against the S3
stand-in, driven by wrk as in `bench.run`. In the middle of the load it reads every thread's
CPU time of every worker from /proc, twice, WINDOW seconds apart, and meanwhile samples each
worker with py-spy (`--gil`: the thread holding the GIL, i.e. the one running Python). A
thread's CPU is shared among the parts its samples fall in (by the innermost frame that
belongs to a part); threads py-spy never saw run no Python: granian's Rust HTTP server.
Divided by the requests answered in the window, that is microseconds of CPU per request:

    HTTP server (granian)     granian's Rust threads, and its Python thread scheduling requests
    Falcon + asyncio          the request's thread outside mailroom's code: Falcon routing,
                              request/response objects, the event loop, granian's Python glue
    middleware                request id, timing (web/middleware.py)
    intake                    headers, tokens, decoding, parsing and checking the body
    body read                 awaiting the body under its deadline
    admission                 rate, the ledger, the dispatcher (in the request's thread)
    metrics                   counting in the request, saving and sampling
    access log                the record in the request, formatting and writing in its thread
    router                    the router actor's thread
    uploaders                 batching, encoding, gzip, settling (the uploader threads)
    S3 client                 signing and sending the PUTs (in the uploader threads)
    other                     other threads (the drain budget, timers, the replay)

The profiler costs a few percent of CPU itself, and the split of a thread's time between its
parts is by samples, not by instructions: read the figures to ±10 %. wrk, the S3 stand-in and
py-spy run on the same cores. `python -m bench.breakdown [--window 8]`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bodies import JSON_POST
from bench.measure import stat_cpu, tree
from bench.results import BATCHED_GRANIAN
from bench.run import answers, ensure_wrk, start_servers, start_sink, stop_servers
from bench.scenarios import SCENARIOS, wrk_script
from tests.support import free_port, wait_for

# The part a sample belongs to: the innermost frame naming one of these (qualified names as
# py-spy prints them). Checked in order, so the more specific come first.
PARTS_BY_FRAME = (
    ("metrics", ("RequestTally.", "Metrics.", "TallyFiles.", "NotingPayloads.")),
    ("access log", ("AccessLogWriter.", "access_line", "AccessRecord")),
    ("S3 client", ("DirectPut.", "sign (store/sigv4", "HTTPConnection.", "HTTPResponse.")),
    ("middleware", ("ObservingMiddleware.", "request_id (")),
    ("intake", ("Intake.", "parse_collection", "parse_ndjson", "decode (", "TokenCheck.")),
    ("body read", ("BodyDeadlines.", "BodyWatch.", "HeadersFirst.")),
    (
        "admission",
        ("Admission.", "LocalRates.", "BoxRates.", "FleetRates.", "Dispatcher.", "Ledger."),
    ),
    ("router", ("Router.",)),
    ("uploaders", ("Uploader.", "OpenBatches.", "Delivery.", "encode_batch", "Batch.")),
)
SPY = ("record", "-r", "200", "--gil", "--threads", "--nonblocking", "-f", "raw")
PARTS = (
    "HTTP server (granian)",
    "Falcon + asyncio",
    "middleware",
    "intake",
    "body read",
    "admission",
    "metrics",
    "access log",
    "router",
    "uploaders",
    "S3 client",
    "other",
)


def part_of(thread: str, frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, marks in PARTS_BY_FRAME:
            if any(mark in frame for mark in marks):
                return part
    if thread == "MainThread":
        return "Falcon + asyncio"
    if thread.startswith("UploaderActor"):
        return "uploaders"
    if thread.startswith("RouterActor"):
        return "router"
    if thread == "access-log":
        return "access log"
    if thread == "metrics-sampler":
        return "metrics"
    if any("granian" in frame for frame in frames):
        return "HTTP server (granian)"
    return "other"


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process."""
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        used = stat_cpu(task / "stat")
        if used is not None:
            seconds[int(task.name)] = used
    return seconds


def samples(path: Path) -> dict[int, tuple[str, collections.Counter[str]]]:
    """py-spy's raw output by thread id: the thread's name and its samples per part."""
    threads: dict[int, tuple[str, collections.Counter[str]]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        head, *frames = stack.split(";")
        found = re.match(r"thread \((\d+)\): (.*)", head)
        if not found or not count.isdigit():
            continue
        tid, name = int(found.group(1)), found.group(2)
        threads.setdefault(tid, (name, collections.Counter()))[1][part_of(name, frames)] += int(
            count
        )
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=8.0, help="seconds profiled")
    parser.add_argument("--latency-ms", type=float, default=30.0)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    wrk = ensure_wrk()
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sink = start_sink(stack, args.latency_ms)
        script = scratch / "post.lua"
        script.write_text(wrk_script(JSON_POST))
        port = free_port()
        log = stack.enter_context((scratch / "server.log").open("w"))  # the access log is on
        row = next(s for s in SCENARIOS if s.name == BATCHED_GRANIAN)  # as bench.run runs it
        (server,) = start_servers(row, port, sink, scratch / "spool", log)
        stack.callback(stop_servers, [server])
        url = f"http://127.0.0.1:{port}/payloads"
        wait_for(lambda: answers(url), timeout=30, interval=0.2)
        time.sleep(1.0)
        workers = [pid for pid in tree(server.pid) if pid != server.pid]
        duration = int(args.window + 8)
        load = subprocess.Popen(
            [wrk, "-t1", "-c64", f"-d{duration}s", "-s", str(script), url],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(4.0)  # past the ramp
        before = {pid: thread_cpu(pid) for pid in workers}
        profiles = {pid: scratch / f"spy-{pid}.txt" for pid in workers}
        spies = [
            subprocess.Popen(
                [py_spy, *SPY, "-p", str(pid), "-d", str(int(args.window)), "-o", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, path in profiles.items()
        ]
        started = time.monotonic()
        for spy in spies:
            spy.wait(args.window + 30)
        window = time.monotonic() - started
        after = {pid: thread_cpu(pid) for pid in workers}
        seen = {pid: samples(path) if path.exists() else {} for pid, path in profiles.items()}
        out, _ = load.communicate(timeout=duration + 30)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = rate * window
    spent: dict[str, float] = collections.defaultdict(float)
    for pid in workers:
        for tid, cpu in after[pid].items():
            used = cpu - before[pid].get(tid, 0.0)
            if used <= 0:
                continue
            _, parts = seen[pid].get(tid, ("", collections.Counter()))
            total = sum(parts.values())
            if not total:  # no Python ran here: granian's Rust threads
                spent["HTTP server (granian)"] += used
                continue
            for part, count in parts.items():
                spent[part] += used * count / total
    report(spent, requests, rate, window, any(seen.values()))


def report(spent: dict[str, float], requests: float, rate: float, window: float, profiled: bool):
    total = sum(spent.values())
    print(
        f"\nwhere a request's CPU goes: batched, 2 granian workers, wrk -t1 -c64, "
        f"{rate:.0f} req/s; {window:.1f} s profiled, both workers (py-spy --gil)"
    )
    if not profiled:
        print("py-spy could not attach (ptrace not permitted?): no breakdown by part")
    print(f"{'part':<24}{'us/req':>8}{'share':>8}")
    for part in PARTS:
        seconds = spent.get(part, 0.0)
        print(f"{part:<24}{seconds * 1e6 / requests:>8.1f}{seconds / max(total, 1e-9):>8.0%}")
    print(f"{'workers in all':<24}{total * 1e6 / requests:>8.1f}")


if __name__ == "__main__":
    main()
