"""`make bench`: mailroom under granian and waitress against the naive baseline and against
each server's ceiling, in one run, on this machine.

Starts the S3 sink (30 ms per PUT, like real S3) in its own process, then for each scenario
starts the server under test, drives it with wrk for a fixed time, waits for the accepted
payloads to land, and reports: req/s, its share of the same server's ceiling, p50/p99, non-2xx,
payloads accepted vs landed, drain time, landed payloads/s, peak RSS (largest process and whole
tree), CPU per payload, and the server's CPU per answered request in the load window.

Every row posts the same three payloads: as the JSON document (`{"version", "token", "data"}`),
or, in the gzip NDJSON row, as gzip-compressed NDJSON to `/payloads?version=...` with the token
in `Authorization: Bearer` (bench/bodies.py); that row runs the headline row's settings and is
compared with it rather than judged by its targets.

Every mailroom scenario sets SERVER (granian or waitress) explicitly. A ceiling scenario runs
bench/ceiling.py (a Falcon app that only parses the body and answers 202) under one of the two
servers with 2 processes: the most that server serves here; nothing lands, so no drain. The
granian ceiling is Falcon's ASGI app, as mailroom is served under granian. With `--baseline
REF` the rows marked `baseline` (single objects with the defaults, batched under either
server) also run against the code of REF (a temporary git worktree), each right after its own,
and are compared with it: req/s, landed payloads/s and CPU per request. `make bench` then runs
bench/breakdown.py (where the batched granian row's CPU goes, part by part) and
bench/replay.py (the time `mailroom replay` takes to empty a spool of 5,000 objects).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

import requests

from bench.bodies import Post
from bench.measure import TreeSampler
from bench.results import PAYLOADS_PER_REQUEST, Result, Scenario, report
from bench.scenarios import (
    CEILING_PROCS,
    NOT_INHERITED,
    REDIS,
    ROOT,
    SCENARIOS,
    SINK_ENV,
    WRK_THREADS,
    wrk_script,
)
from tests.redis_server import RedisServer
from tests.support import free_port, wait_for


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[tuple[str, Path]]:
    """The code of `ref` checked out in a temporary git worktree: (short commit, its path)."""
    commit = git("rev-parse", "--verify", "--short", f"{ref}^{{commit}}")
    where = Path(tempfile.mkdtemp(prefix=f"mailroom-{commit}-"))
    git("worktree", "add", "--detach", str(where), commit)
    try:
        yield commit, where
    finally:
        try:
            git("worktree", "remove", "--force", str(where))
        except RuntimeError as error:
            print(error, file=sys.stderr)
        shutil.rmtree(where, ignore_errors=True)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it with apt-get", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def sink_payloads(endpoint: str) -> int:
    return requests.get(endpoint + "/_stats", timeout=5).json()["payloads"]


def answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
    except requests.ConnectionError:
        return False
    return True


def run_scenario(
    scenario: Scenario,
    wrk: str,
    script: Path,
    sink: str,
    duration: int,
    spool: Path,
    code: Path = ROOT,
) -> Result:
    """One run; the server runs the code in `code` (this work tree, or a baseline's worktree)."""
    port = free_port()
    log = (spool.parent / f"{spool.name}.log").open("w")  # the servers' log lines
    servers = start_servers(scenario, port, sink, spool, log, code)
    url = f"http://127.0.0.1:{port}/payloads"

    def exited() -> bool:
        return any(server.poll() is not None for server in servers)

    try:
        wait_for(lambda: exited() or answers(url), timeout=30, interval=0.2)
        if exited():
            codes = [server.returncode for server in servers]
            raise RuntimeError(f"the server exited ({codes}) before answering")
        time.sleep(0.2 if scenario.server == "naive" else 1.0)  # every process listening
        before = sink_payloads(sink) if scenario.lands else 0
        with TreeSampler([server.pid for server in servers]) as sampler:
            out = subprocess.run(
                [
                    wrk,
                    f"-t{WRK_THREADS}",
                    f"-c{scenario.connections}",
                    f"-d{duration}s",
                    "--latency",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{port}{scenario.post.path}",  # wrk's path and query
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            load_cpu = sampler.cpu_now()  # the load window only: wrk's start to its exit
            loaded = time.monotonic()
            fields = dict(re.findall(r"(\w+)=(\d+)", out.split("RESULT", 1)[1]))
            accepted = int(fields["ok"]) * PAYLOADS_PER_REQUEST
            drain, landed = 0.0, 0
            if scenario.lands:  # a ceiling sends nothing to S3: nothing to wait for
                deadline = loaded + 120
                while sink_payloads(sink) - before < accepted and time.monotonic() < deadline:
                    time.sleep(0.05)
                drain = time.monotonic() - loaded
                landed = sink_payloads(sink) - before
    finally:
        stop_servers(servers)
        log.close()
    seconds = int(fields["us"]) / 1e6
    answered = int(fields["ok"]) + int(fields["refused"]) + int(fields["other"])
    return Result(
        scenario=scenario,
        rps=int(fields["requests"]) / seconds,
        p50_ms=int(fields["p50"]) / 1000,
        p99_ms=int(fields["p99"]) / 1000,
        ok=int(fields["ok"]),
        refused=int(fields["refused"]),
        other=int(fields["other"]),
        sockerr=int(fields["sockerr"]),
        accepted=accepted,
        landed=landed,
        drain_s=drain,
        landed_per_s=landed / (seconds + drain),
        peak_process_mib=sampler.peak_process_mib,
        peak_total_mib=sampler.peak_total_mib,
        cpu_ms_per_payload=sampler.cpu * 1000 / max(landed, 1),
        cpu_us_per_request=load_cpu * 1e6 / max(answered, 1),
    )


def start_servers(
    scenario: Scenario, port: int, sink: str, spool: Path, log: IO[str], code: Path = ROOT
) -> list[subprocess.Popen[bytes]]:
    """The scenario's server processes on `port`, writing to the S3 stand-in at `sink`, with
    only the settings the scenario names (NOT_INHERITED are not taken from this shell)."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env |= {**SINK_ENV, "AWS_ENDPOINT_URL_S3": sink, "PORT": str(port)}
    env |= {"SPOOL_DIR": str(spool)} | scenario.env
    if code != ROOT:
        env["PYTHONPATH"] = str(code)  # ahead of the venv's editable install of this tree
    return [
        subprocess.Popen(
            [sys.executable, "-m", *command], cwd=code, env=env, stdout=log, stderr=log
        )
        for command in server_commands(scenario, port)
    ]


def stop_servers(servers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each, as a platform stops a service; killed if not gone within 40 s."""
    for server in servers:
        server.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def server_commands(scenario: Scenario, port: int) -> list[list[str]]:
    """The `python -m` arguments of each process to start for the scenario's server."""
    if scenario.server == "naive":
        return [["bench.naive"]]
    if scenario.server == "mailroom":
        return [["mailroom", "serve"]]
    if scenario.http.startswith("granian"):  # as mailroom.granian_server sets it up
        asgi = scenario.http == "granian"
        return [
            [
                "granian",
                "--interface",
                "asgi" if asgi else "wsgi",
                "--http",
                "1",
                *(["--loop", "uvloop"] if asgi else []),
                "--workers",
                str(CEILING_PROCS),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backlog",
                "2048",
                "--backpressure",
                "2048",
                "--http1-header-read-timeout",
                "10000",  # HEADER_TIMEOUT's default
                "--log-level",
                "error",
                "bench.ceiling:asgi_app" if asgi else "bench.ceiling:app",
            ]
        ]
    return [["bench.ceiling", "--port", str(port)]] * CEILING_PROCS  # SO_REUSEPORT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per scenario")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="S3 sink latency per PUT")
    parser.add_argument("--only", default="", help="run only scenarios whose name has this")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per scenario; the median by req/s is shown"
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        default="",
        help="also run the batched waitress scenario against the code of this git commit or ref",
    )
    args = parser.parse_args()
    started = time.monotonic()
    wrk = ensure_wrk()
    chosen = [s for s in SCENARIOS if args.only in s.name]
    results = []
    failed: list[str] = []
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        scripts: dict[Post, Path] = {}  # one wrk script per distinct request
        for s in chosen:
            if s.post not in scripts:
                scripts[s.post] = scratch / f"post-{len(scripts)}.lua"
                scripts[s.post].write_text(wrk_script(s.post))
        plan = [(s, ROOT) for s in chosen]
        if args.baseline and any(s.baseline for s in chosen):
            commit, tree = stack.enter_context(worktree(args.baseline))
            plan = []
            for s in chosen:  # each baseline run right after its own: interleaved, like repeats
                plan.append((s, ROOT))
                if s.baseline:
                    plan.append((replace(s, name=f"{s.name} @ {commit}", ref=commit), tree))
        sink = start_sink(stack, args.latency_ms)
        if any(s.env.get("RATE_STORE") == REDIS for s, _ in plan):
            redis = RedisServer(free_port(), scratch).start()
            stack.callback(redis.stop)
            plan = [
                (replace(s, env={**s.env, "RATE_STORE": redis.url}), code)
                if s.env.get("RATE_STORE") == REDIS
                else (s, code)
                for s, code in plan
            ]
        runs: dict[str, list[Result]] = {s.name: [] for s, _ in plan}
        for attempt in range(args.repeat):  # interleaved, so a noisy minute hits all
            for index, (scenario, code) in enumerate(plan):
                print(f"run {attempt + 1}/{args.repeat}: {scenario.name}", file=sys.stderr)
                spool = scratch / f"spool-{attempt}-{index}"
                try:
                    script = scripts[scenario.post]
                    result = run_scenario(scenario, wrk, script, sink, args.duration, spool, code)
                except Exception as error:  # one broken server must not lose the other figures
                    print(f"run failed: {scenario.name}: {error!r}", file=sys.stderr)
                    failed.append(scenario.name)
                    continue
                runs[scenario.name].append(result)
        for scenario, _ in plan:
            done = runs[scenario.name]
            if not done:
                continue
            ordered = sorted(done, key=lambda r: r.rps)
            spread = ", ".join(f"{r.rps:.0f}" for r in done)
            cpu = ", ".join(f"{r.cpu_us_per_request:.0f}" for r in done)
            print(
                f"{scenario.name}: req/s of each run: {spread}; CPU us/req: {cpu}",
                file=sys.stderr,
            )
            results.append(ordered[len(ordered) // 2])
    report(results, args.duration, args.latency_ms, WRK_THREADS)
    print(f"\nthis run took {(time.monotonic() - started) / 60:.1f} min of wall time")
    if failed:
        print(f"\n{len(failed)} run(s) failed: {', '.join(sorted(set(failed)))}")
        sys.exit(1)


def start_sink(stack: contextlib.ExitStack, latency_ms: float) -> str:
    """The S3 sink in its own process, stopped when `stack` closes; its endpoint."""
    port = free_port()
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.s3sink",
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    stack.callback(sink.wait)
    stack.callback(sink.terminate)
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(endpoint + "/_stats"), timeout=10)
    return endpoint


if __name__ == "__main__":
    main()
