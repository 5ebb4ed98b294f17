"""What `make bench` runs: its scenarios (each a server, its settings and the posts wrk
sends), the settings every mailroom row shares, and wrk's Lua script. bench/run.py runs them."""

from __future__ import annotations

import os
from pathlib import Path

from bench.bodies import GZIP_NDJSON_POST, JSON_POST, TOKEN, Post
from bench.results import BATCHED_GRANIAN, RATES_BOX, RATES_FLEET, SINGLE_DEFAULTS, Scenario

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
    mailroom(BATCHED_GRANIAN, "granian", BATCHED, baseline=True),
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
