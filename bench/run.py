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

import requests

from bench.bodies import GZIP_NDJSON_POST, JSON_POST, TOKEN, Post
from bench.measure import TreeSampler
from bench.results import PAYLOADS_PER_REQUEST, SINGLE_DEFAULTS, Result, Scenario, report
from tests.redis_server import RedisServer
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
WRK_THREADS = int(os.environ.get("WRK_THREADS", "1"))  # one C thread keeps up; two steal a core

# wrk's Lua: [[REQUEST]] is the scenario's request (Post.lua); the counts come back in one line.
WRK_SCRIPT = """
[[REQUEST]]
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; refused = 0; other = 0 end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1
  elseif status == 503 then refused = refused + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("ok"); r = r + t:get("refused"); o = o + t:get("other")
  end
  io.write(string.format(
    "RESULT ok=%d refused=%d other=%d requests=%d sockerr=%d p50=%.0f p99=%.0f us=%d\\n",
    a, r, o, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""

SINK_ENV = {
    "S3_BUCKET": "bench",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    # As served by default: INFO, so the access log is on (each server's log goes to a file).
    "LOG_LEVEL": "INFO",
    "INGEST_TOKENS": TOKEN,  # the posts' token: auth is on, as in production
}
# Settings a scenario gets only if it sets them: not inherited from the shell that runs the
# bench, so a row with none of them (SINGLE_DEFAULTS, bench/replay.py) runs the defaults.
NOT_INHERITED = (
    "MAX_WORKERS",
    "MAX_QUEUE",
    "BATCH_MAX_PAYLOADS",
    "BATCH_MAX_BYTES",
    "BATCH_MAX_WAIT_MS",
    "BATCH_GZIP",
    "WEB_THREADS",
    "ACK_MODE",
    "S3_PUT",
    "S3_PREFIX",
    "TENANT_RATE",
    "TENANT_BURST",
    "RATE_STORE",
)


# wrk's connections, the same for every row (WRK_CONNECTIONS to change): the granian ceiling
# needs 64 to be saturated (~36,000 req/s at 32, ~43,000 at 64 here); waitress too serves more
# at 64 than at 32 (ceiling ~11,000 -> ~13,000, batched mailroom ~4,900 -> ~5,700), and
# mailroom under granian as much at 64 as at 32 (its p99 about doubles). One count for all keeps
# each row's share of its server's ceiling a like-for-like ratio.
CONNECTIONS = int(os.environ.get("WRK_CONNECTIONS", "64"))
BATCHED = {
    "MAX_WORKERS": "4",
    "MAX_QUEUE": "5000",
    "BATCH_MAX_PAYLOADS": "2000",
    "BATCH_MAX_WAIT_MS": "250",
    "BATCH_GZIP": "true",
}


RATES_BOX = "tenant rate per box: batched, 2 procs, granian"
RATES_FLEET = "tenant rate per fleet (Redis): batched, 2 procs, granian"
NEVER_REFUSING = {"TENANT_RATE": "1000000", "TENANT_BURST": "2000000"}
REDIS = "@redis"  # replaced by the URL of the Redis server the run starts


def mailroom(
    name: str,
    http: str,
    env: dict[str, str],
    *,
    baseline: bool = False,
    post: Post = JSON_POST,
) -> Scenario:
    """A scenario of `mailroom serve` under `http` (SERVER set explicitly), 2 processes."""
    env = {"SERVER": http, "WEB_CONCURRENCY": "2", **env}
    return Scenario(name, "mailroom", CONNECTIONS, env, http=http, baseline=baseline, post=post)


SCENARIOS = [
    Scenario("naive: thread per payload", "naive", CONNECTIONS),
    # granian's ceiling is Falcon's ASGI app, as mailroom is served under granian; the WSGI
    # one (as mailroom was served before) is shown beside it, not used as a ceiling.
    Scenario("ceiling: granian ASGI, 2 workers", "ceiling", CONNECTIONS, http="granian"),
    Scenario("ceiling: granian WSGI, 2 workers", "ceiling", CONNECTIONS, http="granian-wsgi"),
    Scenario("ceiling: waitress, 2 procs", "ceiling", CONNECTIONS, http="waitress"),
    # A fresh install: no MAX_WORKERS, no MAX_QUEUE (32 uploaders per process, up to 100
    # payloads queued for each), one object per payload; judged against the naive row and
    # (no slower than before) against the baseline.
    mailroom(SINGLE_DEFAULTS, "granian", {}, baseline=True),
    mailroom("mailroom batched, 2 procs, granian", "granian", BATCHED, baseline=True),
    # The headline's settings, posting the same payloads as gzip NDJSON (issue 12): compared
    # with the headline row, not judged by its targets.
    mailroom(
        "mailroom batched, gzip NDJSON, 2 procs, granian",
        "granian",
        BATCHED,
        post=GZIP_NDJSON_POST,
    ),
    mailroom("mailroom batched, 2 procs, waitress", "waitress", BATCHED, baseline=True),
    # Issue 19: TENANT_RATE high enough never to refuse, counted per box, then per fleet in
    # a local Redis; the fleet row must cost at most 10 % more than the box row.
    mailroom(RATES_BOX, "granian", {**BATCHED, **NEVER_REFUSING}),
    mailroom(RATES_FLEET, "granian", {**BATCHED, **NEVER_REFUSING, "RATE_STORE": REDIS}),
    mailroom(  # sustains 2 x 8 / 30 ms = 533 payloads/s; wrk offers over 10x that
        "overload: single objects, 8 uploaders, 2 procs, granian",
        "granian",
        {"MAX_WORKERS": "8", "MAX_QUEUE": "50"},
    ),
]
CEILING_PROCS = 2


def wrk_script(post: Post) -> str:
    return WRK_SCRIPT.replace("[[REQUEST]]", post.lua())


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
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env |= {**SINK_ENV, "AWS_ENDPOINT_URL_S3": sink, "PORT": str(port)}
    env |= {"SPOOL_DIR": str(spool)} | scenario.env
    if code != ROOT:
        env["PYTHONPATH"] = str(code)  # ahead of the venv's editable install of this tree
    log = (spool.parent / f"{spool.name}.log").open("w")  # the servers' log lines
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", *command], cwd=code, env=env, stdout=log, stderr=log
        )
        for command in server_commands(scenario, port)
    ]
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
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.wait(40)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
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
