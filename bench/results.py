"""The figures of a benchmark run: what each scenario measured, printed with issue #4's targets."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

PAYLOADS_PER_REQUEST = 3


@dataclass
class Scenario:
    name: str
    server: str  # "mailroom" or "naive"
    connections: int
    env: dict[str, str] = field(default_factory=dict)
    ref: str = ""  # a baseline: the short commit whose code the server runs; "" = this work tree

    @property
    def base_name(self) -> str:
        """The name without the baseline's " @ commit"."""
        return self.name.removesuffix(f" @ {self.ref}") if self.ref else self.name


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


def report(results: list[Result], duration: int, latency: float, wrk_threads: int) -> None:
    width = max([46] + [len(r.scenario.name) + 2 for r in results])
    print()
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; S3 sink {latency:g} ms per PUT; "
        f"wrk -t{wrk_threads} for {duration}s per run; "
        f"{PAYLOADS_PER_REQUEST} payloads per request; each row is the median run by req/s"
    )
    header = (
        f"{'scenario':<{width}}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'2xx':>8}{'503':>8}"
        f"{'other':>6}{'accepted':>9}{'landed':>8}{'drain s':>8}{'landed/s':>9}"
        f"{'RSS MiB':>8}{'tree':>6}{'CPU ms/p':>9}{'CPU us/req':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.scenario.name:<{width}}{r.rps:>8.0f}{r.p50_ms:>8.1f}{r.p99_ms:>8.1f}{r.ok:>8}"
            f"{r.refused:>8}{r.other + r.sockerr:>6}{r.accepted:>9}{r.landed:>8}"
            f"{r.drain_s:>8.1f}{r.landed_per_s:>9.0f}{r.peak_process_mib:>8.0f}"
            f"{r.peak_total_mib:>6.0f}{r.cpu_ms_per_payload:>9.2f}{r.cpu_us_per_request:>11.0f}"
        )
    print()
    for r in results:
        for line in targets(r):
            print(line)
    comparisons = against_baseline(results)
    if comparisons:
        print()
        for line in comparisons:
            print(line)
    naive = next((r for r in results if r.scenario.server == "naive"), None)
    if naive and naive.landed_per_s:
        print()
        for r in results:
            if not r.scenario.ref and r.scenario.name.startswith("mailroom single objects, 2"):
                ratio = r.landed_per_s / naive.landed_per_s
                print(
                    f"{verdict_text(ratio >= 3)} single objects land >= 3x the naive baseline: "
                    f"{ratio:.1f}x"
                )
        for r in results:
            if r is not naive:
                print(
                    f"{r.scenario.name:<{width}} lands {r.landed_per_s / naive.landed_per_s:5.1f}x "
                    "the naive baseline's payloads per second"
                )


def verdict_text(ok: bool) -> str:
    return "MET   " if ok else "MISSED"


def targets(r: Result) -> list[str]:
    """Issue #4's figures, each said plainly as met or missed."""

    verdict = verdict_text
    name = r.scenario.name
    lines: list[str] = []
    if r.scenario.ref:
        return lines  # a baseline's row is there to compare with, not to be judged
    if name.startswith("mailroom batched"):
        lines.append(f"{verdict(r.rps >= 4200)} batched >= 4,200 req/s: {r.rps:.0f}")
        lines.append(f"{verdict(r.p99_ms <= 100)} batched p99 <= 100 ms: {r.p99_ms:.1f}")
        lines.append(
            f"{verdict(r.landed >= r.accepted)} batched accepted = landed: "
            f"{r.accepted} / {r.landed}"
        )
        lines.append(f"{verdict(r.drain_s <= 2)} batched drain <= 2 s: {r.drain_s:.1f}")
    if name.startswith("overload"):
        lines.append(f"{verdict(r.p99_ms <= 50)} overload p99 <= 50 ms: {r.p99_ms:.1f}")
        lines.append(
            f"{verdict(r.peak_process_mib < 200)} overload RSS < 200 MB per process: "
            f"{r.peak_process_mib:.0f} MiB"
        )
    return lines


def against_baseline(results: list[Result]) -> list[str]:
    """Each baseline row's CPU per request beside this tree's; the batched target, if it ran."""
    lines = []
    mine = {r.scenario.name: r for r in results if not r.scenario.ref}
    for base in (r for r in results if r.scenario.ref):
        name, ref = base.scenario.base_name, base.scenario.ref
        current = mine.get(name)
        then = f"{base.cpu_us_per_request:.0f} at {ref}"
        if current is None:
            figures, met = f"- (no run of this tree) vs {then}", False
        else:
            ratio = current.cpu_us_per_request / max(base.cpu_us_per_request, 1e-9)
            figures = f"{current.cpu_us_per_request:.0f} vs {then} ({ratio:.2f}x)"
            met = ratio < 0.5
        lines.append(f"{name.removeprefix('mailroom ')}: CPU us/req {figures}")
        if name.startswith("mailroom batched"):
            lines.append(
                f"{verdict_text(met)} batched mode CPU us/req less than half of the baseline's: "
                + figures
            )
    return lines
