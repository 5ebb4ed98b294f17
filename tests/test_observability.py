"""Operator-grade logs and metrics: the access log, the settings line as fields, the request
latency histogram, no `*_created` series, and per-process numbers that add up."""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import falcon.testing
import orjson
import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from actors import Refused
from config import Settings
from mailroom.access_log import PIPE_BUF, AccessLogWriter
from mailroom.logs import log_settings, make_handler, settings_record
from mailroom.metrics import PROCESS_GAUGES, Metrics
from mailroom.process import open_access_log
from tests.support import ServiceProcess, sink_env, wait_for
from web.access_log import AccessRecord, access_line
from web.request_id import RequestRecord, current_request

BODY = {"version": "1", "token": "t", "data": [{"n": 1}, {"n": 2}, {"n": 3}]}
POST_202 = 'method="POST",route="/payloads",status="202"'


class FakeSubmitter:
    def __init__(self) -> None:
        self.full: str | None = None  # refused before the body is read
        self.refuse: str | None = None  # refused once the collection is counted

    def refusal(self) -> str | None:
        return self.full

    def submit(self, version: str, documents: list[Any], *more: Any, **named: Any) -> int:
        if self.refuse:
            raise Refused(self.refuse)
        return len(documents)


class Captured:
    """JSON lines written through the service's own logging handler and formatter."""

    def __init__(self, fmt: str = "json") -> None:
        self.stream = io.StringIO()
        self.handler = make_handler(fmt, self.stream)

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stream.getvalue().splitlines()]


class AccessLines:
    """What the access log's writer writes, formatted as in production (flushed on asking)."""

    def __init__(self, fmt: str = "json") -> None:
        self.written: list[bytes] = []
        self.writer = AccessLogWriter(fmt, write=self.written.append, flush_seconds=3600)

    def text(self) -> str:
        self.writer.flush()
        return b"".join(self.written).decode()

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.text().splitlines()]


@pytest.fixture
def access_lines() -> Iterator[AccessLines]:
    lines = AccessLines()
    yield lines
    lines.writer.close()


def client_for(
    make_app: Callable[..., Any],
    submitter: FakeSubmitter,
    settings: Settings,
    *,
    draining: threading.Event | None = None,
    registry: CollectorRegistry | None = None,
    access: AccessLines | None = None,
) -> falcon.testing.TestClient:
    observer = Metrics(registry) if registry is not None else None
    sink = access.writer if access is not None else None
    app = make_app(submitter, settings, draining, observer=observer, access=sink)
    return falcon.testing.TestClient(app)


def post(client: falcon.testing.TestClient, body: Any, **headers: str) -> falcon.testing.Result:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.simulate_post(
        "/payloads", body=raw, headers={"Content-Type": "application/json", **headers}
    )


def test_one_access_line_per_answer_with_its_fields(make_app, access_lines) -> None:
    submitter = FakeSubmitter()
    draining = threading.Event()
    client = client_for(make_app, submitter, Settings(), draining=draining, access=access_lines)
    answers = [
        post(client, BODY, **{"X-Request-ID": "req-202"}),
        post(client, b"{not json", **{"X-Request-ID": "req-400"}),
        client.simulate_get("/nowhere", headers={"X-Request-ID": "req-404"}),
    ]
    submitter.refuse = "all uploader mailboxes are full"  # refused once counted: 3 payloads
    answers.append(post(client, BODY, **{"X-Request-ID": "req-503-counted"}))
    submitter.full = "all uploader mailboxes are full"  # refused before the body is read
    answers.append(post(client, BODY, **{"X-Request-ID": "req-503-unread"}))
    draining.set()
    answers.append(post(client, BODY, **{"X-Request-ID": "req-503-draining"}))

    assert [a.status_code for a in answers] == [202, 400, 404, 503, 503, 503]
    lines = access_lines.records()
    assert len(lines) == len(answers)  # one line per request, errors included
    for line, answer in zip(lines, answers, strict=True):
        assert line["logger"] == "mailroom.access" and line["level"] == "INFO"
        assert line["event"] == "access"
        assert line["status"] == answer.status_code
        assert line["bytes"] == len(answer.content)
        assert line["request_id"] == answer.headers["X-Request-ID"]
        assert isinstance(line["duration_ms"], float) and 0 <= line["duration_ms"] < 5000
        assert line["message"].startswith(f"{line['method']} {line['path']} {line['status']} in ")
    accepted, invalid, missing, counted, unread, draining_line = lines
    assert (accepted["method"], accepted["path"], accepted["payloads"]) == ("POST", "/payloads", 3)
    assert accepted["bytes"] == len(b'{"accepted":3}')
    assert "payloads" not in invalid  # the body was never a collection
    assert (missing["method"], missing["path"]) == ("GET", "/nowhere")
    assert counted["payloads"] == 3  # read and refused: the count is known
    assert "payloads" not in unread and "payloads" not in draining_line


def test_an_access_line_is_what_the_logging_handler_would_write() -> None:
    """Written without the logging machinery, the line is the same as through it, in both
    formats: the same keys and values, the same message and clock."""
    when = 1_796_000_000.123
    record = AccessRecord(when, "POST", '/pay"loads', 202, 14, 0.0004567, "rid-1", 3, "acme")
    message, fields = access_line(record)
    for fmt in ("json", "text"):
        lines = AccessLines(fmt)
        lines.writer(record)
        captured = Captured(fmt)
        logged = logging.makeLogRecord(
            {
                "name": "mailroom.access",
                "levelname": "INFO",
                "levelno": logging.INFO,
                "msg": message,
                "created": when,
                "msecs": 123.0,
                **fields,
            }
        )
        # The old access log ran inside the request: its id came from the request context.
        token = current_request.set(RequestRecord("rid-1", 0.0))
        captured.handler.handle(logged)
        current_request.reset(token)
        if fmt == "json":
            (ours,) = lines.records()
            (theirs,) = captured.records()
            assert ours == theirs
            assert ours["path"] == '/pay"loads' and ours["tenant"] == "acme"
        else:
            assert lines.text() == captured.stream.getvalue()
        lines.writer.close()


def test_access_lines_are_written_in_whole_lines_of_at_most_pipe_buf_bytes() -> None:
    lines = AccessLines()
    for n in range(500):
        lines.writer(AccessRecord(1.0, "GET", f"/healthz/{n}", 200, 10, 0.001, "r", None, None))
    text = lines.text()
    assert all(len(chunk) <= PIPE_BUF and chunk.endswith(b"\n") for chunk in lines.written)
    assert len(lines.written) > 1
    assert [orjson.loads(line)["path"] for line in text.splitlines()] == [
        f"/healthz/{n}" for n in range(500)
    ]


def test_the_access_log_keeps_client_input_to_one_plain_line(make_app, access_lines) -> None:
    client = client_for(make_app, FakeSubmitter(), Settings(), access=access_lines)
    client.simulate_get("/a%0A{fake}%0Dline" + "x" * 500, query_string="token=secret")
    (line,) = access_lines.records()
    assert "\n" not in line["path"] and "\r" not in line["path"]
    assert line["path"].startswith("/a\\n{fake}\\rline") and len(line["path"]) < 300
    assert "secret" not in access_lines.text()  # no query string


def test_access_log_off_or_silenced_by_the_log_level() -> None:
    assert open_access_log(Settings(access_log=False)) is None
    logger = logging.getLogger("mailroom.access")
    saved = logger.level
    try:
        logger.setLevel(logging.WARNING)  # LOG_LEVEL=WARNING
        assert open_access_log(Settings()) is None
        logger.setLevel(logging.INFO)
        writer = open_access_log(Settings())
        assert writer is not None
        writer.close()
    finally:
        logger.setLevel(saved)


def test_the_settings_line_carries_each_setting_as_a_field() -> None:
    settings = Settings(
        ingest_tokens=("ingest-Zq81-secret",),
        ops_tokens=("ops-Zq81-secret", "ops-2"),
        max_workers=7,
        s3_bucket="my-bucket",
    )
    captured = Captured()
    logger = logging.getLogger("test.settings")
    logger.addHandler(captured.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        log_settings(logger, settings)
    finally:
        logger.removeHandler(captured.handler)
    (line,) = captured.records()
    assert line["event"] == "settings"
    described = settings.describe()
    assert {k: line[k] for k in described} == orjson.loads(orjson.dumps(described))
    assert (line["max_workers"], line["s3_bucket"], line["access_log"]) == (7, "my-bucket", True)
    assert line["ingest_tokens"] == "1 token(s)" and line["ops_tokens"] == "2 token(s)"
    assert "{" not in line["message"]  # no Python dict in the text any more
    assert "1 token(s)" in line["message"] and "s3://my-bucket/payloads/" in line["message"]
    assert "secret" not in captured.stream.getvalue()

    message, fields = settings_record(settings)
    text = Captured("text")
    text.handler.handle(logging.makeLogRecord({"msg": message, "levelname": "INFO", **fields}))
    assert "max_workers=7" in text.stream.getvalue()  # fields as key=value in LOG_FORMAT=text


def test_latency_histogram_by_method_route_and_status_and_no_created_series(make_app) -> None:
    registry = CollectorRegistry()
    submitter = FakeSubmitter()
    client = client_for(make_app, submitter, Settings(), registry=registry)
    for _ in range(3):
        assert post(client, BODY).status_code == 202
    assert post(client, b"{not json").status_code == 400
    assert client.simulate_get("/nowhere/at/all").status_code == 404
    text = generate_latest(registry).decode()
    name = "mailroom_http_request_duration_seconds"
    assert metric(text, f"{name}_count", POST_202) == 3
    assert metric(text, f"{name}_bucket", 'le="+Inf",' + POST_202) == 3
    assert metric(text, f"{name}_bucket", 'le="10.0",' + POST_202) == 3
    assert 0 < metric(text, f"{name}_sum", POST_202) < 10
    assert metric(text, f"{name}_count", 'method="POST",route="/payloads",status="400"') == 1
    assert metric(text, f"{name}_count", 'method="GET",route="unmatched",status="404"') == 1
    assert metric(text, "mailroom_http_requests_total", POST_202) == 3  # still counted too
    assert "_created" not in text


def test_granian_workers_each_show_their_process_and_their_numbers_add_up(sink, tmp_path) -> None:
    env = sink_env(sink, tmp_path / "spool", WEB_CONCURRENCY="2", MAX_WORKERS="2")
    service = ServiceProcess(env).start()
    try:
        wait_for(lambda: service.log().count("serving POST") == 2, timeout=20)
        sink.hang_for(60)  # S3 answers no PUT: what each process holds stays where it is
        for i in range(20):  # a fresh connection each, so both workers take some
            answer = requests.post(
                service.url + "/payloads",
                json=BODY,
                headers={"X-Request-ID": f"obs-{i}"},
                timeout=5,
            )
            assert answer.status_code == 202

        def consistent() -> tuple[str, dict[str, dict]] | None:
            reports = healthz_of_each_worker(service, workers=2)
            text = requests.get(service.url + "/metrics", timeout=5).text
            expected = {
                (pid, str(slot["slot"])): float(slot["depth"])
                for pid, report in reports.items()
                for slot in report["slots"]
            }
            settled = (
                sum(r["held"] for r in reports.values())
                == 60
                == metric(text, "mailroom_payloads_held")
            )
            if not settled or depth_series(text) != expected:
                return None  # a report (cached 1 s) or a gauge (sampled each 1 s) not fresh yet
            return text, reports

        text, reports = wait_for(consistent, timeout=20, interval=0.5)
        pids = set(reports)
        depths = depth_series(text)
        assert {pid for pid, _ in depths} == pids and len(depths) == 4  # 2 slots x 2 processes
        assert sum(depths.values()) == sum(
            slot["depth"] for report in reports.values() for slot in report["slots"]
        )
        assert sum(depths.values()) > 0
        # Nothing is durable while S3 hangs: all 60 payloads are held, summed over processes.
        assert metric(text, "mailroom_payloads_held") == 60

        assert metric(text, "mailroom_serving_processes") == 2
        for name in PROCESS_GAUGES:
            series = per_pid(text, "mailroom_" + name)
            assert set(series) == pids, (name, series)
            assert all(value > 0 for value in series.values()), (name, series)
        assert all(
            v > 20e6 for v in per_pid(text, "mailroom_process_resident_memory_bytes").values()
        )

        name = "mailroom_http_request_duration_seconds"
        assert metric(text, f"{name}_count", POST_202) == 20
        assert metric(text, f"{name}_bucket", 'le="+Inf",' + POST_202) == 20
        assert metric(text, "mailroom_http_requests_total", POST_202) == 20
        assert "_created" not in text
        names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
        assert all(n.startswith("mailroom_") for n in names if n), names
    finally:
        sink.reset_faults()  # the held PUTs are answered; the drain can finish
        code, log = service.stop()
    assert code == 0, log
    access = [r for r in json_lines(log) if r.get("event") == "access"]
    ours = sorted(
        (r for r in access if str(r.get("request_id", "")).startswith("obs-")),
        key=lambda r: int(r["request_id"][4:]),
    )
    assert [r["request_id"] for r in ours] == [f"obs-{i}" for i in range(20)]
    for record in ours:
        assert (record["logger"], record["level"]) == ("mailroom.access", "INFO")
        assert (record["method"], record["path"], record["status"]) == ("POST", "/payloads", 202)
        assert (record["payloads"], record["bytes"]) == (3, len(b'{"accepted":3}'))
        assert record["duration_ms"] >= 0
        assert str(record["process"]) in pids
    assert any(r["path"] == "/metrics" and r["status"] == 200 for r in access)


def test_one_waitress_process_has_process_metrics_no_created_series_and_no_access_log(
    sink, tmp_path
) -> None:
    env = sink_env(sink, tmp_path / "spool", SERVER="waitress", ACCESS_LOG="false")
    service = ServiceProcess(env).start()
    try:
        for _ in range(5):
            assert requests.post(service.url + "/payloads", json=BODY, timeout=5).status_code == 202
        assert requests.get(service.url + "/nowhere", timeout=5).status_code == 404
        text = requests.get(service.url + "/metrics", timeout=5).text
    finally:
        code, log = service.stop()
    assert code == 0, log
    # One process, prometheus_client's own registry: no pid label, and no `*_created` either.
    assert "_created" not in text
    assert metric(text, "mailroom_http_request_duration_seconds_count", POST_202) == 5
    assert metric(text, "mailroom_serving_processes") == 1
    assert metric(text, "mailroom_process_resident_memory_bytes") > 20e6
    assert metric(text, "mailroom_process_open_fds") > 0
    assert 'mailroom_mailbox_depth{slot="0"}' in text
    assert not [r for r in json_lines(log) if r.get("event") == "access"]
    assert "mailroom.access" not in log


# -- helpers --------------------------------------------------------------------------------


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text (0 if absent)."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def per_pid(text: str, name: str) -> dict[str, float]:
    found = re.findall(r"^" + re.escape(name) + r'\{pid="(\d+)"\} (\S+)$', text, re.MULTILINE)
    return {pid: float(value) for pid, value in found}


def depth_series(text: str) -> dict[tuple[str, str], float]:
    found = re.findall(
        r'^mailroom_mailbox_depth\{pid="(\d+)",slot="(\d+)"\} (\S+)$', text, re.MULTILINE
    )
    return {(pid, slot): float(value) for pid, slot, value in found}


def healthz_of_each_worker(service: ServiceProcess, *, workers: int) -> dict[str, dict]:
    """`/healthz` of every worker, asked over fresh connections until each has answered."""
    reports: dict[str, dict] = {}
    for _ in range(100):
        report = requests.get(service.url + "/healthz", timeout=5).json()
        reports[str(report["pid"])] = report
        if len(reports) == workers:
            return reports
    raise AssertionError(f"only {sorted(reports)} answered /healthz")


def json_lines(log: str) -> list[dict]:
    return [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_an_access_line_fits_one_atomic_pipe_write_whatever_the_path() -> None:
    """Two workers share one stderr: a line longer than PIPE_BUF could be split by the other's
    write (tried: 36 of 32,016 lines spliced with 256 escaped emoji as the path)."""
    lines = AccessLines()
    for path in ("/" + "\U0001f600" * 300, "/" + "\x01" * 300, '/"\\' * 300):
        lines.writer(AccessRecord(1.0, "\x02" * 40, path, 404, 10, 0.001, "r", None, None))
    lines.writer.flush()
    records = [line for chunk in lines.written for line in chunk.splitlines(keepends=True)]
    assert len(records) == 3
    assert all(len(line) <= PIPE_BUF for line in records), [len(line) for line in records]
    assert all(orjson.loads(line)["event"] == "access" for line in records)
