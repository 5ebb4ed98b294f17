"""The figures of a benchmark run: what each scenario measured, printed with issue #4's targets."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

from bench.bodies import JSON_POST, PAYLOADS, Post

PAYLOADS_PER_REQUEST = len(PAYLOADS)  # the same in every row, whatever its body's format
# The row judged against the naive baseline (issue 10): one object per payload, the service's
# default settings (no MAX_WORKERS, no MAX_QUEUE), as a fresh install runs.
SINGLE_DEFAULTS = "mailroom single objects, defaults, 2 procs, granian"
BATCHED_GRANIAN = "mailroom batched, 2 procs, granian"  # the headline row, and the breakdown's
RATES_BOX = "tenant rate per box: batched, 2 procs, granian"
RATES_FLEET = "tenant rate per fleet (Redis): batched, 2 procs, granian"


@dataclass
class Scenario:
    name: str
    server: str  # "mailroom", "naive" or "ceiling" (bench/ceiling.py: parse and answer, no S3)
    connections: int
    env: dict[str, str] = field(default_factory=dict)
    ref: str = ""  # a baseline: the short commit whose code the server runs; "" = this work tree
    http: str = "waitress"  # the HTTP server: "granian" or "waitress" (mailroom's SERVER)
    baseline: bool = False  # with --baseline, this scenario also runs against the baseline's code
    post: Post = JSON_POST  # what wrk posts (bench/bodies.py): the JSON document unless set

    @property
    def base_name(self) -> str:
        """The name without the baseline's " @ commit"."""
        return self.name.removesuffix(f" @ {self.ref}") if self.ref else self.name

    @property
    def lands(self) -> bool:
        """Whether what it accepts goes to S3 (a ceiling's answers land nowhere)."""
        return self.server != "ceiling"


@dataclass
class Result:
    scenario: Scenario
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    refused: int
    other: int
    sockerr: int
    accepted: int
    landed: int
    drain_s: float
    landed_per_s: float
    peak_process_mib: float
    peak_total_mib: float
    cpu_ms_per_payload: float  # CPU of the load window and the drain after it, per landed payload
    # CPU (user + system) of the server's whole process tree from just before wrk starts until
    # it exits -- the load window only, not the drain -- per request wrk got answered (2xx + 503
    # + other). Uploads still queued when wrk stops are done in the drain and not counted here.
    cpu_us_per_request: float


def ceiling_shares(results: list[Result]) -> dict[str, float]:
    """Each mailroom row's req/s over that of its server's ceiling row, by scenario name."""
    ceilings = {
        r.scenario.http: r for r in results if r.scenario.server == "ceiling" and not r.scenario.ref
    }
    shares = {}
    for r in results:
        ceiling = ceilings.get(r.scenario.http)
        if r.scenario.server == "mailroom" and ceiling is not None and ceiling.rps:
            shares[r.scenario.name] = r.rps / ceiling.rps
    return shares


def connections_note(results: list[Result]) -> str:
    """Which rows wrk drove with how many connections: "64 for ...; 32 for ..."."""
    kinds: dict[int, list[str]] = {}
    for r in results:
        s = r.scenario
        kind = {
            "naive": "naive",
            "ceiling": f"the {s.http} ceiling",
            "mailroom": f"{s.http} mailroom rows",
        }.get(s.server, s.server)
        if kind not in kinds.setdefault(s.connections, []):
            kinds[s.connections].append(kind)
    if len(kinds) == 1:
        return f"{next(iter(kinds))} connections for every row"
    return "; ".join(
        f"{count} connections for {', '.join(names)}"
        for count, names in sorted(kinds.items(), reverse=True)
    )


def report(results: list[Result], duration: int, latency: float, wrk_threads: int) -> None:
    width = max([46] + [len(r.scenario.name) + 2 for r in results])
    shares = ceiling_shares(results)
    print()
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; S3 sink {latency:g} ms per PUT; "
        f"wrk -t{wrk_threads} for {duration}s per run, {connections_note(results)}; "
        f"{PAYLOADS_PER_REQUEST} payloads per request; each row is the median run by req/s; "
        "of ceiling = req/s / the same server's ceiling row's req/s in this run"
    )
    header = (
        f"{'scenario':<{width}}{'req/s':>8}{'of ceiling':>11}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'2xx':>8}{'503':>8}{'other':>6}{'accepted':>9}{'landed':>8}{'drain s':>8}"
        f"{'landed/s':>9}{'RSS MiB':>8}{'tree':>6}{'CPU ms/p':>9}{'CPU us/req':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        share = shares.get(r.scenario.name)
        lands = r.scenario.lands
        print(
            f"{r.scenario.name:<{width}}{r.rps:>8.0f}"
            f"{'-' if share is None else f'{share:.2f}':>11}"
            f"{r.p50_ms:>8.1f}{r.p99_ms:>8.1f}{r.ok:>8}"
            f"{r.refused:>8}{r.other + r.sockerr:>6}{r.accepted:>9}"
            f"{r.landed if lands else '-':>8}"
            f"{f'{r.drain_s:.1f}' if lands else '-':>8}"
            f"{f'{r.landed_per_s:.0f}' if lands else '-':>9}"
            f"{r.peak_process_mib:>8.0f}{r.peak_total_mib:>6.0f}"
            f"{f'{r.cpu_ms_per_payload:.2f}' if lands else '-':>9}"
            f"{r.cpu_us_per_request:>11.0f}"
        )
    print()
    for r in results:
        for line in targets(r, shares.get(r.scenario.name)):
            print(line)
    comparisons = against_json(results) + against_baseline(results) + rate_store_cost(results)
    if comparisons:
        print()
        for line in comparisons:
            print(line)
    naive = next((r for r in results if r.scenario.server == "naive"), None)
    if naive and naive.landed_per_s:
        print()
        for r in results:
            if not r.scenario.ref and r.scenario.base_name == SINGLE_DEFAULTS:
                ratio = r.landed_per_s / naive.landed_per_s
                print(
                    f"{verdict_text(ratio >= 3)} single objects, default settings, land >= 3x "
                    f"the naive baseline: {ratio:.1f}x ({r.scenario.http})"
                )
        for r in results:
            if r is not naive and r.scenario.lands:
                print(
                    f"{r.scenario.name:<{width}} lands {r.landed_per_s / naive.landed_per_s:5.1f}x "
                    "the naive baseline's payloads per second"
                )


def verdict_text(ok: bool) -> str:
    return "MET   " if ok else "MISSED"


def targets(r: Result, share: float | None = None) -> list[str]:
    """Issue #4's figures and the granian issue's, each said plainly as met or missed.

    `share` is the row's req/s over its server's ceiling's in the same run (None: no ceiling).
    """

    verdict = verdict_text
    name, http = r.scenario.name, r.scenario.http
    lines: list[str] = []
    if r.scenario.ref or not r.scenario.lands:
        return lines  # a baseline's row or a ceiling is there to compare with, not to be judged
    landed = (
        f"every accepted payload landed: {r.accepted} accepted / {r.landed} landed",
        r.landed >= r.accepted,
    )
    if r.scenario.post != JSON_POST:  # compared with its JSON twin (against_json), not judged
        tag = f"{r.scenario.post.label} {http}"
        lines.append(f"{verdict(landed[1])} {tag} {landed[0]}")
        lines.append(f"{verdict(r.drain_s <= 2)} {tag} drain <= 2 s: {r.drain_s:.1f}")
        return lines
    if name.startswith("mailroom batched") and http == "granian":
        tag = "batched granian"
        shown = "no ceiling row" if share is None else f"{share:.2f} of it"
        lines.append(
            f"{verdict(r.rps >= 16_700)} {tag} >= 16,700 req/s (a million a minute): {r.rps:.0f}"
        )
        lines.append(f"{verdict(r.rps >= 11_000)} {tag} >= 11,000 req/s at the least: {r.rps:.0f}")
        lines.append(
            f"{verdict(share is not None and share >= 0.45)} {tag} >= 0.45 of the granian "
            f"(ASGI) ceiling's req/s: {shown}"
        )
        lines.append(f"{verdict(r.p99_ms <= 50)} {tag} p99 <= 50 ms: {r.p99_ms:.1f}")
        lines.append(f"{verdict(landed[1])} {tag} {landed[0]}")
        lines.append(f"{verdict(r.drain_s <= 2)} {tag} drain <= 2 s: {r.drain_s:.1f}")
        lines.append(
            f"{verdict(r.peak_process_mib < 200)} {tag} RSS < 200 MB per process: "
            f"{r.peak_process_mib:.0f} MiB"
        )
    elif name.startswith("mailroom batched"):
        tag = f"batched {http}"
        lines.append(f"{verdict(r.p99_ms <= 100)} {tag} p99 <= 100 ms: {r.p99_ms:.1f}")
        lines.append(f"{verdict(landed[1])} {tag} {landed[0]}")
        lines.append(f"{verdict(r.drain_s <= 2)} {tag} drain <= 2 s: {r.drain_s:.1f}")
    if name.startswith("overload"):
        lines.append(f"{verdict(r.p99_ms <= 50)} overload p99 <= 50 ms: {r.p99_ms:.1f}")
        lines.append(
            f"{verdict(r.peak_process_mib < 200)} overload RSS < 200 MB per process: "
            f"{r.peak_process_mib:.0f} MiB"
        )
    return lines


def against_json(results: list[Result]) -> list[str]:
    """Each row posting another format beside the row of the same run with the same server and
    settings posting the JSON document: req/s and CPU us/req, as a ratio and a difference."""
    lines = []
    for other in (r for r in results if r.scenario.post != JSON_POST and not r.scenario.ref):
        s = other.scenario
        label = s.post.label
        twin = next(
            (
                r
                for r in results
                if r.scenario.post == JSON_POST
                and not r.scenario.ref
                and (r.scenario.server, r.scenario.http, r.scenario.env, r.scenario.connections)
                == (s.server, s.http, s.env, s.connections)
            ),
            None,
        )
        if twin is None:
            lines.append(f"{s.name}: no JSON row with the same settings in this run to compare")
            continue
        extra = other.cpu_us_per_request - twin.cpu_us_per_request
        lines.append(
            f"{label} costs {abs(extra):.0f} us/req {'more' if extra >= 0 else 'less'} than JSON "
            f"({other.cpu_us_per_request:.0f} vs {twin.cpu_us_per_request:.0f} CPU us/req, "
            f"{other.cpu_us_per_request / max(twin.cpu_us_per_request, 1e-9):.2f}x); req/s "
            f"{other.rps:.0f} vs {twin.rps:.0f} ({other.rps / max(twin.rps, 1e-9):.2f}x); "
            f"{s.name} vs {twin.scenario.name}"
        )
        refusals = [
            f"{r.scenario.name}: {r.refused} 503, {r.other + r.sockerr} other"
            for r in (other, twin)
            if r.refused + r.other + r.sockerr
        ]
        if refusals:  # a 503 costs far less CPU than a 202: the us/req are not like for like
            lines.append(f"  not like for like, not every answer a 2xx: {'; '.join(refusals)}")
    return lines


def against_baseline(results: list[Result]) -> list[str]:
    """Each row of this tree beside the same row run on the baseline's code in the same run:
    req/s, landed payloads/s and CPU per request, and whether it is no slower than before
    (at least NO_SLOWER of the baseline's: single runs here differ by more than that)."""
    lines = []
    mine = [r for r in results if not r.scenario.ref and r.scenario.server == "mailroom"]
    for base in (r for r in results if r.scenario.ref):
        ref = base.scenario.ref
        current = next((r for r in mine if r.scenario.name == base.scenario.base_name), None)
        if current is None:
            lines.append(f"{base.scenario.base_name}: no run of this tree beside {ref}'s")
            continue
        # One object per payload is bound by S3: what lands is the figure; else what is served.
        single = base.scenario.base_name == SINGLE_DEFAULTS
        now, then = (current.landed_per_s, base.landed_per_s) if single else (current.rps, base.rps)
        figure = "landed payloads/s" if single else "req/s"
        ratio = now / max(then, 1e-9)
        lines.append(
            f"{verdict_text(ratio >= NO_SLOWER)} {current.scenario.name.removeprefix('mailroom ')}"
            f" no slower than {ref}: {figure} {now:.0f} vs {then:.0f} ({ratio:.2f}x); CPU us/req "
            f"{current.cpu_us_per_request:.0f} vs {base.cpu_us_per_request:.0f} "
            f"({current.cpu_us_per_request / max(base.cpu_us_per_request, 1e-9):.2f}x)"
        )
    return lines


NO_SLOWER = 0.9


def rate_store_cost(results: list[Result]) -> list[str]:
    """Issue 19: the tenant limit counted in Redis for the fleet, beside the same row counted
    per box: CPU per request at most 10 % more."""
    box = next((r for r in results if r.scenario.name == RATES_BOX), None)
    fleet = next((r for r in results if r.scenario.name == RATES_FLEET), None)
    if box is None or fleet is None:
        return []
    extra = fleet.cpu_us_per_request / max(box.cpu_us_per_request, 1e-9) - 1
    return [
        f"{verdict_text(extra <= 0.10)} RATE_STORE (Redis) costs at most 10 % more CPU a request "
        f"than the per-box limit: {fleet.cpu_us_per_request:.0f} vs {box.cpu_us_per_request:.0f}"
        f" us/req ({extra:+.0%}); req/s {fleet.rps:.0f} vs {box.rps:.0f}"
    ]
