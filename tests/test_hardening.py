"""Hostile and odd input: always a JSON 4xx naming the problem, never a 500; auth; OpenAPI."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_spec

from actors import ActorSystem
from config import Settings
from mailroom.health import health_report
from store.spool import DeadLetterSpool
from tests.support import ANYWHERE, RecordingStore

TOKENS = ("s3cret-one", "s3cret-two")


@pytest.fixture
def system(tmp_path: Path) -> Iterator[ActorSystem]:
    actors = ActorSystem(
        RecordingStore(),
        DeadLetterSpool(tmp_path / "spool", ANYWHERE),
        workers=2,
        max_queue=100_000,
    )
    actors.start()
    yield actors


@pytest.fixture
def config() -> Settings:
    return Settings(max_body_bytes=65536, max_payloads_per_request=50, ingest_tokens=TOKENS)


@pytest.fixture
def client(
    system: ActorSystem, config: Settings, tmp_path: Path, make_app: Callable[..., Any]
) -> falcon.testing.TestClient:
    spool = DeadLetterSpool(tmp_path / "spool", ANYWHERE)

    def health() -> dict[str, Any]:
        return {**health_report(system, spool), "draining": False}

    app = make_app(system.dispatcher(), config, health=health)
    return falcon.testing.TestClient(app)


def post(client: falcon.testing.TestClient, body: bytes, **headers: str) -> falcon.testing.Result:
    return client.simulate_post(
        "/payloads", body=body, headers={"Content-Type": "application/json", **headers}
    )


def collection(**overrides: Any) -> bytes:
    return orjson.dumps({"version": "1.0", "token": TOKENS[0], "data": [{"a": 1}], **overrides})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[" * 5000 + b"]" * 5000, "body"),  # deep nesting
        (b'{"version":"1","token":"t","data":[{"n":' + b"9" * 400 + b"}]}", "body"),
        (b'{"version":"1","token":"\xff\xfe","data":[{}]}', "body"),  # invalid UTF-8
        (b'{"version":"1",\x00"token":"t","data":[{}]}', "body"),  # a NUL byte
        (b"null", "body"),
        (b'"just a string"', "body"),
        (collection(version="../../etc/passwd"), "version"),
        (collection(version="v" * 65), "version"),
        (collection(version=""), "version"),
        (collection(version="1.0\x00"), "version"),
        (collection(token=42), "token"),
        (collection(token=""), "token"),
        (collection(token="x" * 257), "token"),
        (collection(data=[{}] * 51), "data"),
        (collection(data=[[1]]), "data[0]"),
        (b'{"version":"1","token":"t","data":[{"n":18446744073709551616}]}', "body"),
        (b'{"version":"1","token":"t","data":[{"n":-9223372036854775809}]}', "body"),
        (b'{"version":"1","token":"t","token":"u","data":[{}]}', "token"),
        (b'{"version":"1","\\u0074oken":"t","token":"u","data":[{}]}', "token"),
        (b'{"version":"1","version":"2","token":"t","data":[{}]}', "version"),
        (b'{"version":"1","token":"t","data":[{}],"data":[{}]}', "data"),
    ],
)
def test_hostile_bodies_get_400_naming_the_field(client, body: bytes, field: str) -> None:
    result = post(client, body)
    assert result.status_code == 400, result.text
    assert result.json["error"] == "invalid_collection"
    assert result.json["field"] == field


def test_a_token_not_in_ingest_tokens_gets_401(client) -> None:
    assert post(client, collection(token=TOKENS[1])).status_code == 202
    result = post(client, collection(token="s3cret-on"))
    assert result.status_code == 401
    assert result.json == {"error": "unauthorized", "message": "token: not accepted"}


def test_request_ids_are_kept_or_made_and_echoed(client) -> None:
    kept = post(client, collection(), **{"X-Request-ID": "abc-123"})
    assert kept.headers["X-Request-ID"] == "abc-123"
    made = post(client, collection(), **{"X-Request-ID": "bad id\twith spaces"})
    assert made.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(made.headers["X-Request-ID"]) == 32
    assert client.simulate_get("/healthz").headers["X-Request-ID"]


def test_healthz_reports_slots_and_goes_503_when_none_is_left(client, system) -> None:
    healthy = client.simulate_get("/healthz")
    assert healthy.status_code == 200
    assert healthy.json["status"] == "ok"
    assert healthy.json["slots_alive"] == 2
    for ref in system.uploaders:
        ref.stop(block=True)
    sick = client.simulate_get("/healthz")
    assert sick.status_code == 503
    assert sick.json["status"] == "unavailable"
    assert sick.json["slots_alive"] == 0


def test_healthz_is_503_while_draining(system, config, make_app) -> None:
    draining = threading.Event()
    app = make_app(
        system.dispatcher(),
        config,
        draining,
        health=lambda: {"draining": draining.is_set(), "slots_alive": 2},
    )
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/healthz").status_code == 200
    draining.set()
    assert client.simulate_get("/healthz").status_code == 503
    refused = post(client, collection())
    assert refused.status_code == 503
    assert refused.json["error"] == "shutting_down"


# -- generated input ------------------------------------------------------------------

texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)))  # what JSON can carry
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(texts.filter(lambda t: len(t) < 8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(orjson.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "version": json_values | texts.filter(lambda t: len(t) < 70),
            "token": json_values | st.sampled_from(TOKENS),
            "data": json_values | st.lists(json_values, max_size=5),
        },
    ).map(orjson.dumps),
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(["application/json", "text/plain", ""]) | header_values,
        "X-Request-ID": header_values,
        "Content-Length": st.integers(min_value=0, max_value=10**7).map(str),
    },
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, extra_headers=headers)
def test_generated_bodies_and_headers_only_ever_get_2xx_or_4xx(client, body, extra_headers):
    result = client.simulate_post("/payloads", body=body, headers=extra_headers)
    assert 200 <= result.status_code < 500, (result.status_code, result.text)
    if result.status_code >= 400:
        assert set(result.json) >= {"error", "message"}
    assert post(client, collection()).status_code == 202  # and it keeps serving


# -- the OpenAPI document against real answers --------------------------------------


def test_the_openapi_document_is_valid_and_matches_real_answers(client, system) -> None:
    document = client.simulate_get("/openapi.json").json
    validate_spec(document)
    answers = {
        "202": post(client, collection()),
        "400": post(client, b"{"),
        "401": post(client, collection(token="nope")),
        "413": client.simulate_post(  # (the ASGI test client sends the real length)
            "/payloads", body=b" " * 70_000, headers={"Content-Type": "application/json"}
        ),
        "415": client.simulate_post("/payloads", body=collection(), headers={}),
    }
    operation = document["paths"]["/payloads"]["post"]
    for status, result in answers.items():
        assert str(result.status_code) == status, result.text
        check(document, operation["responses"][status], result.json)
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    check_schema(document, request_schema, orjson.loads(collection()))
    with pytest.raises(jsonschema.ValidationError):
        check_schema(document, request_schema, orjson.loads(collection(version="../x")))
    health = client.simulate_get("/healthz")
    check(document, document["paths"]["/healthz"]["get"]["responses"]["200"], health.json)


def check(document: dict, response: dict, body: Any) -> None:
    check_schema(document, response["content"]["application/json"]["schema"], body)


def check_schema(document: dict, schema: dict, instance: Any) -> None:
    resolver_schema = {**schema, "components": document["components"]}
    jsonschema.validate(instance, resolver_schema)


def test_integers_up_to_64_bits_and_names_repeated_inside_payloads_are_fine(client) -> None:
    body = orjson.dumps(
        {
            "version": "1",
            "token": TOKENS[0],
            "data": [{"u": 2**64 - 1, "i": -(2**63), "token": "x", "s": "1" * 40}],
        }
    )
    assert post(client, body).status_code == 202


@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")  # the methods are made up
def test_made_up_methods_are_counted_as_other(system, config, make_app) -> None:
    seen: list[tuple[str, str, int]] = []

    class Recorder:
        def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
            seen.append((method, route, status))

        def payloads_accepted(self, count: int, tenant: str | None = None) -> None:
            pass

        def payloads_refused(self, count: int, tenant: str | None = None) -> None:
            pass

    client = falcon.testing.TestClient(make_app(system.dispatcher(), config, observer=Recorder()))
    for method in ("FROB", "X-MADE-UP", "GET"):
        client.simulate_request(method, "/payloads")
    assert [m for m, _, _ in seen] == ["other", "other", "GET"]


def test_ops_token_guards_healthz_and_metrics(system, make_app) -> None:
    config = Settings(ops_tokens=("ops-secret",))
    seen: list[tuple[str, int]] = []

    class Recorder:
        def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
            seen.append((route, status))

        def payloads_accepted(self, count: int, tenant: str | None = None) -> None:
            pass

        def payloads_refused(self, count: int, tenant: str | None = None) -> None:
            pass

    app = make_app(
        system.dispatcher(),
        config,
        health=lambda: {"draining": False, "slots_alive": 1},
        metrics=lambda: (b"m 1\n", "text/plain"),
        observer=Recorder(),
    )
    client = falcon.testing.TestClient(app)
    for path in ("/healthz", "/metrics"):
        refused = client.simulate_get(path)
        assert refused.status_code == 401
        assert refused.json["error"] == "unauthorized"
        wrong = client.simulate_get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.simulate_get(path, headers={"Authorization": "Bearer ops-secret"})
        assert right.status_code == 200
    assert client.simulate_get("/openapi.json").status_code == 200  # not guarded
    assert ("/healthz", 401) in seen and ("/metrics", 401) in seen  # counted under the route


def test_the_health_report_is_built_at_most_once_a_second() -> None:
    from mailroom.health import CachedReport

    builds: list[int] = []

    def build() -> dict[str, int]:
        builds.append(1)
        return {"n": len(builds)}

    report = CachedReport(build, max_age=0.3)
    first = [report.get() for _ in range(100)]
    assert len(builds) == 1 and all(r is first[0] for r in first)
    import time

    time.sleep(0.35)
    report.get()
    assert len(builds) == 2


def test_a_body_nested_near_the_limit_with_escapes_is_a_400_not_a_500(client) -> None:
    nested = b"[" * 1000 + b"]" * 1000
    body = b'{"version":"1","token":"s3cret-\\u006fne","data":[' + nested + b"]}"
    answer = post(client, body)
    assert answer.status_code == 400
    assert answer.json["field"] in ("body", "data[0]")
