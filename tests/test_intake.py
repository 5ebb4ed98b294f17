"""What ingest clients send: compressed bodies, NDJSON, bearer tokens, tenants and their limits."""

from __future__ import annotations

import gzip
import io
import re
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import falcon
import falcon.testing
import orjson
import pytest
import requests
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import Refused
from actors.ledger import TENANT_FULL
from bench.s3sink import S3Sink
from config import Settings
from rates.limiter import NoLimit
from rates.local import LocalRates
from tests.support import ServiceProcess, sink_env
from web import create_app

TOKENS = ("acme:k-acme", "acme:k-acme-next", "globex:k-globex", "plain-token")


class Recorder:
    """A submitter that records what it was given, with the tenant."""

    def __init__(self) -> None:
        self.got: list[tuple[str, list[Any], str | None]] = []
        self.refuse: str | None = None

    def refusal(self) -> str | None:
        return None

    def submit(
        self,
        version: str,
        documents: list[Any],
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        if self.refuse:
            raise Refused(self.refuse)
        self.got.append((version, documents, tenant))
        return len(documents)


def client_for(
    make_app: Callable[..., Any], recorder: Recorder, **overrides: Any
) -> falcon.testing.TestClient:
    options = {"ingest_tokens": TOKENS, "max_body_bytes": 2 << 20, **overrides}
    return falcon.testing.TestClient(make_app(recorder, Settings(**options)))


def ndjson(docs: list[dict]) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


DOCS = [{"temp": 21.5}, {"temp": 22.0, "tags": ["a"]}]
COMPRESS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


@pytest.mark.parametrize("encoding", sorted(COMPRESS))
def test_compressed_json_and_ndjson_bodies_are_accepted(make_app, encoding: str) -> None:
    recorder = Recorder()
    client = client_for(make_app, recorder)
    body = orjson.dumps({"version": "1", "token": "k-globex", "data": DOCS})
    answer = client.simulate_post(
        "/payloads",
        body=COMPRESS[encoding](body),
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert answer.status_code == 202 and answer.json == {"accepted": 2}
    answer = client.simulate_post(
        "/payloads",
        params={"version": "2.0"},
        body=COMPRESS[encoding](ndjson(DOCS)),
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": encoding,
            "Authorization": "Bearer k-acme",
        },
    )
    assert answer.status_code == 202, answer.text
    assert recorder.got == [("1", DOCS, "globex"), ("2.0", DOCS, "acme")]


def test_a_plain_body_labelled_gzip_is_a_400_and_an_unknown_encoding_a_415(make_app) -> None:
    client = client_for(make_app, Recorder())
    body = orjson.dumps({"version": "1", "token": "k-acme", "data": DOCS})
    answer = client.simulate_post(
        "/payloads",
        body=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert answer.status_code == 400 and answer.json["error"] == "invalid_encoding"
    answer = client.simulate_post(
        "/payloads",
        body=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "br"},
    )
    assert answer.status_code == 415 and "'br' is not supported" in answer.json["message"]


def test_a_decompression_bomb_gets_413_in_bounded_memory(make_app) -> None:
    zeros = bytes(1 << 20)
    packer = zlib.compressobj(9, wbits=31)
    bomb = b"".join(packer.compress(zeros) for _ in range(1024)) + packer.flush()  # 1 GiB
    assert len(bomb) < 1_100_000
    client = client_for(make_app, Recorder())
    tracemalloc.start()
    try:
        answer = client.simulate_post(
            "/payloads",
            params={"version": "1"},
            body=bomb,
            headers={
                "Content-Type": "application/x-ndjson",
                "Content-Encoding": "gzip",
                "Authorization": "Bearer k-acme",
            },
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert answer.status_code == 413
    assert "decompresses to more than 4194304 bytes" in answer.json["message"]  # 2 x 2 MiB
    assert peak < 24 << 20  # the limit and a chunk, not the gigabyte


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.read_bytes += len(chunk)
        return chunk


@pytest.mark.parametrize("size", [0, 1 << 20])
def test_a_bad_bearer_token_is_refused_before_the_body_is_read(size: int) -> None:
    app = create_app(Recorder(), Settings(ingest_tokens=TOKENS, max_body_bytes=2 << 20))
    stream = CountingStream(b"x" * size)
    environ = falcon.testing.create_environ(
        "/payloads",
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": "Bearer wrong",
            "Content-Length": str(size),
        },
    )
    environ["wsgi.input"] = stream
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["401 Unauthorized"]
    assert orjson.loads(body)["error"] == "unauthorized"
    assert stream.read_bytes == 0  # the body was not read: a 401 costs the same for any size


def test_header_and_body_tokens_must_agree_and_ndjson_needs_the_header(make_app) -> None:
    recorder = Recorder()
    client = client_for(make_app, recorder)
    body = orjson.dumps({"version": "1", "token": "k-globex", "data": DOCS})
    headers = {"Content-Type": "application/json"}
    agree = client.simulate_post(
        "/payloads", body=body, headers={**headers, "Authorization": "Bearer k-globex"}
    )
    assert agree.status_code == 202
    differ = client.simulate_post(
        "/payloads", body=body, headers={**headers, "Authorization": "Bearer k-acme"}
    )
    assert differ.status_code == 401 and "differ" in differ.json["message"]
    bare = client.simulate_post(
        "/payloads",
        params={"version": "1"},
        body=ndjson(DOCS),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert bare.status_code == 401 and "needs Authorization: Bearer" in bare.json["message"]
    assert len(recorder.got) == 1


def test_ndjson_errors_name_the_line_or_the_version(make_app) -> None:
    recorder = Recorder()
    client = client_for(make_app, recorder)
    headers = {"Content-Type": "application/x-ndjson", "Authorization": "Bearer plain-token"}
    bad = client.simulate_post(
        "/payloads", params={"version": "1"}, body=b'{"a":1}\n\n[1,2]\n', headers=headers
    )
    assert bad.status_code == 400 and bad.json["field"] == "line 3"
    torn = client.simulate_post(
        "/payloads", params={"version": "1"}, body=b'{"a":1}\n{"b":', headers=headers
    )
    assert torn.status_code == 400 and torn.json["field"] == "line 2"
    twice = client.simulate_post(
        "/payloads", query_string="version=1&version=2", body=b'{"a":1}\n', headers=headers
    )
    assert twice.status_code == 400 and "given more than once" in twice.json["message"]
    missing = client.simulate_post("/payloads", body=b'{"a":1}\n', headers=headers)
    assert missing.status_code == 400 and missing.json["field"] == "version (query parameter)"
    huge = client.simulate_post(
        "/payloads",
        params={"version": "1"},
        body=b'{"n":123456789012345678901234}\n',
        headers=headers,
    )
    assert huge.status_code == 400 and huge.json["field"] == "line 1"
    assert recorder.got == []
    ok = client.simulate_post(
        "/payloads", params={"version": "1"}, body=b'{"a":1}\n\n{"b":2}', headers=headers
    )
    assert ok.status_code == 202 and recorder.got == [("1", [{"a": 1}, {"b": 2}], None)]


def test_a_rotated_token_is_the_same_tenant(make_app) -> None:
    recorder = Recorder()
    client = client_for(make_app, recorder)
    for token in ("k-acme", "k-acme-next"):
        answer = client.simulate_post(
            "/payloads",
            params={"version": "1"},
            body=ndjson(DOCS),
            headers={"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 202
    assert [tenant for _, _, tenant in recorder.got] == ["acme", "acme"]


def test_over_the_tenant_rate_is_a_429_with_retry_after(make_app) -> None:
    recorder = Recorder()
    client = client_for(
        make_app, recorder, tenant_rate=10.0, tenant_burst=4, max_payloads_per_request=4
    )
    headers = {"Content-Type": "application/x-ndjson", "Authorization": "Bearer k-acme"}
    first = client.simulate_post(
        "/payloads",
        params={"version": "1"},
        body=ndjson([{"n": i} for i in range(4)]),
        headers=headers,
    )
    assert first.status_code == 202
    second = client.simulate_post(
        "/payloads", params={"version": "1"}, body=ndjson(DOCS), headers=headers
    )
    assert second.status_code == 429
    assert second.headers["Retry-After"] == "1"
    assert "tenant acme is over TENANT_RATE (10 payloads/s)" in second.json["message"]
    other = client.simulate_post(  # another tenant's bucket is its own
        "/payloads",
        params={"version": "1"},
        body=ndjson(DOCS),
        headers={**headers, "Authorization": "Bearer k-globex"},
    )
    assert other.status_code == 202
    recorder.refuse = TENANT_FULL  # the ledger's share refusal is a 429 too
    time.sleep(0.5)
    full = client.simulate_post(
        "/payloads", params={"version": "1"}, body=ndjson(DOCS[:1]), headers=headers
    )
    assert full.status_code == 429 and "TENANT_SHARE" in full.json["message"]


def test_the_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    rates = LocalRates(rate=10, burst=10, clock=lambda: now[0])
    assert rates.take("a", 10) == 0.0
    assert rates.take("a", 5) == pytest.approx(0.5)  # 5 short at 10/s
    now[0] = 0.5
    assert rates.take("a", 5) == 0.0
    assert NoLimit().take("a", 10**6) == 0.0  # TENANT_RATE=0: off


ndjson_docs = st.lists(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.text(max_size=20),
            st.booleans(),
            st.none(),
        ),
        max_size=4,
    ),
    min_size=1,
    max_size=20,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(docs=ndjson_docs, encoding=st.sampled_from(["gzip", "deflate", "zstd", "identity"]))
def test_any_ndjson_body_compressed_any_way_arrives_as_sent(make_app, docs, encoding) -> None:
    recorder = Recorder()
    client = client_for(make_app, recorder)
    raw = ndjson(docs)
    body = raw if encoding == "identity" else COMPRESS[encoding](raw)
    answer = client.simulate_post(
        "/payloads",
        params={"version": "1"},
        body=body,
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": encoding,
            "Authorization": "Bearer k-acme",
        },
    )
    assert answer.status_code == 202, answer.text
    assert recorder.got == [("1", docs, "acme")]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(max_size=200), encoding=st.sampled_from(["gzip", "deflate", "zstd"]))
def test_garbage_labelled_compressed_is_a_4xx_never_a_5xx(make_app, garbage, encoding) -> None:
    answer = client_for(make_app, Recorder()).simulate_post(
        "/payloads",
        params={"version": "1"},
        body=garbage,
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": encoding,
            "Authorization": "Bearer k-acme",
        },
    )
    assert 400 <= answer.status_code < 500


def test_a_flooding_tenant_leaves_the_other_its_posts(sink: S3Sink, tmp_path) -> None:
    """acme floods at many times what S3 drains; globex posts at its usual rate and gets at
    least 95 % of its posts accepted (its share of the mailboxes is kept for it)."""
    sink.latency = 0.05  # 2 uploaders store 40 payloads/s
    env = sink_env(
        sink,
        tmp_path / "spool",
        MAX_WORKERS="2",
        MAX_QUEUE="50",
        INGEST_TOKENS="acme:k-acme,globex:k-globex",
    )
    service = ServiceProcess(env).start()
    stop = threading.Event()
    flood = {"202": 0, "429": 0, "503": 0}
    lock = threading.Lock()

    def flooder() -> None:
        with requests.Session() as http:
            for _ in range(3000):  # bounded: 3,000 posts or the stop
                if stop.is_set():
                    return
                answer = http.post(
                    service.url + "/payloads",
                    params={"version": "1"},
                    data=ndjson([{"flood": i} for i in range(10)]),
                    headers={
                        "Content-Type": "application/x-ndjson",
                        "Authorization": "Bearer k-acme",
                    },
                    timeout=10,
                )
                with lock:
                    flood[str(answer.status_code)] = flood.get(str(answer.status_code), 0) + 1

    floods = [threading.Thread(target=flooder) for _ in range(6)]
    for thread in floods:
        thread.start()
    statuses = []
    try:
        time.sleep(1.0)  # the flood has filled acme's share
        with requests.Session() as http:
            for n in range(40):  # 2 payloads every 0.1 s: 20/s, half of what S3 drains
                answer = http.post(
                    service.url + "/payloads",
                    params={"version": "1"},
                    data=ndjson([{"globex": n, "i": 0}, {"globex": n, "i": 1}]),
                    headers={
                        "Content-Type": "application/x-ndjson",
                        "Authorization": "Bearer k-globex",
                    },
                    timeout=10,
                )
                statuses.append(answer.status_code)
                time.sleep(0.1)
        metrics = requests.get(service.url + "/metrics", timeout=5).text
    finally:
        stop.set()
        for thread in floods:
            thread.join(timeout=20)
        sink.latency = 0.001
        code, log = service.stop()
    assert code == 0, log
    assert flood["429"] > 50, flood  # the flood really was held back, as a tenant
    accepted = statuses.count(202)
    assert accepted >= 0.95 * len(statuses), statuses
    # The metrics and the access log name the tenant (a bounded label: tenants are configured).
    assert re.search(r'^mailroom_payloads_refused_total\{tenant="acme"\} [1-9]', metrics, re.M)
    assert re.search(r'^mailroom_payloads_accepted_total\{tenant="globex"\} [1-9]', metrics, re.M)
    assert '"tenant":"globex"' in log and '"tenant":"acme"' in log
    keys = list(sink.objects)
    assert any(key.startswith("payloads/tenant=globex/dt=") for key in keys)
    assert any(key.startswith("payloads/tenant=acme/dt=") for key in keys)


def test_a_json_body_may_leave_its_token_to_the_header(make_app) -> None:
    recorder = Recorder()
    answer = client_for(make_app, recorder).simulate_post(
        "/payloads",
        body=orjson.dumps({"version": "1", "data": DOCS}),
        headers={"Content-Type": "application/json", "Authorization": "Bearer k-globex"},
    )
    assert answer.status_code == 202 and recorder.got == [("1", DOCS, "globex")]
    missing = client_for(make_app, recorder).simulate_post(
        "/payloads",
        body=orjson.dumps({"version": "1", "data": DOCS}),
        headers={"Content-Type": "application/json"},
    )
    assert missing.status_code == 400 and missing.json["field"] == "token"


def test_without_ingest_tokens_another_auth_scheme_is_not_ours_to_refuse(make_app) -> None:
    recorder = Recorder()
    client = falcon.testing.TestClient(make_app(recorder, Settings()))
    answer = client.simulate_post(
        "/payloads",
        body=orjson.dumps({"version": "1", "token": "t", "data": DOCS}),
        headers={"Content-Type": "application/json", "Authorization": "Basic dXNlcjpwYXNz"},
    )
    assert answer.status_code == 202


def test_a_refused_collection_gives_its_rate_back(make_app) -> None:
    recorder = Recorder()
    client = client_for(
        make_app, recorder, tenant_rate=0.001, tenant_burst=4, max_payloads_per_request=4
    )
    headers = {"Content-Type": "application/x-ndjson", "Authorization": "Bearer k-acme"}
    recorder.refuse = TENANT_FULL
    for _ in range(3):  # refused by the share each time: the rate is not used up
        answer = client.simulate_post(
            "/payloads", params={"version": "1"}, body=ndjson(DOCS), headers=headers
        )
        assert answer.status_code == 429 and "TENANT_SHARE" in answer.json["message"]
    recorder.refuse = None
    answer = client.simulate_post(
        "/payloads", params={"version": "1"}, body=ndjson(DOCS), headers=headers
    )
    assert answer.status_code == 202


def test_settings_refuse_a_burst_below_one_collection_and_a_bad_endpoint() -> None:
    from config import ConfigError

    with pytest.raises(ConfigError, match="TENANT_BURST=5 is not valid"):
        Settings.from_env({"TENANT_RATE": "1", "TENANT_BURST": "5"})
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL_S3='notaurl' is not valid"):
        Settings.from_env({"AWS_ENDPOINT_URL_S3": "notaurl"})
