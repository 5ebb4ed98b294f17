"""Every row of the HTTP contract, against the real resource with a fake actor system."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import falcon.testing
import orjson
import pytest

from actors import Refused
from config import Settings
from web import create_app


class FakeSubmitter:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[Any]]] = []
        self.refuse: str | None = None
        self.full: str | None = None  # what refusal() says: refused before the body is read

    def refusal(self) -> str | None:
        return self.full

    def submit(
        self,
        version: str,
        documents: list[Any],
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        if self.refuse:
            raise Refused(self.refuse)
        self.received.append((version, documents))
        return len(documents)


@pytest.fixture
def submitter() -> FakeSubmitter:
    return FakeSubmitter()


def test_plainly_full_mailboxes_refuse_before_the_body_is_read(client, submitter) -> None:
    submitter.full = "all uploader mailboxes are full"
    answer = client.simulate_post(
        "/payloads", body=b"{not json at all", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 503  # not 400: the body was never parsed
    assert answer.json["error"] == "overloaded"
    assert "all uploader mailboxes are full" in answer.json["message"]
    assert answer.headers["Retry-After"] == "3"
    assert submitter.received == []


SETTINGS = Settings(max_body_bytes=2048, max_payloads_per_request=5, retry_after_seconds=3)


@pytest.fixture
def client(submitter: FakeSubmitter, make_app: Callable[..., Any]) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(make_app(submitter, SETTINGS))


def post(client: falcon.testing.TestClient, body: Any, **kwargs: Any) -> falcon.testing.Result:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.simulate_post("/payloads", body=raw, headers=headers, **kwargs)


GOOD = {"version": "1.0", "token": "t", "data": [{"a": 1}, {"b": [1, 2]}]}


def test_accepted_collection_gets_202_with_the_count(client, submitter) -> None:
    result = post(client, GOOD)
    assert result.status_code == 202
    assert result.json == {"accepted": 2}
    assert submitter.received == [("1.0", [{"a": 1}, {"b": [1, 2]}])]


def test_content_type_parameters_are_accepted(client) -> None:
    result = post(client, GOOD, headers={"Content-Type": "application/json; charset=utf-8"})
    assert result.status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"", "body"),
        (b"[1, 2]", "body"),
        (b"null", "body"),
        ({"token": "t", "data": [{}]}, "version"),
        ({"version": 1, "token": "t", "data": [{}]}, "version"),
        ({"version": "1", "data": [{}]}, "token"),
        ({"version": "1", "token": None, "data": [{}]}, "token"),
        ({"version": "1", "token": "t"}, "data"),
        ({"version": "1", "token": "t", "data": {"a": 1}}, "data"),
        ({"version": "1", "token": "t", "data": []}, "data"),
        ({"version": "1", "token": "t", "data": [{}] * 6}, "data"),
        ({"version": "1", "token": "t", "data": [{"ok": 1}, "text"]}, "data[1]"),
        ({"version": "1", "token": "t", "data": [None]}, "data[0]"),
    ],
)
def test_bad_input_gets_400_naming_the_field(client, submitter, body, field) -> None:
    result = post(client, body)
    assert result.status_code == 400
    assert result.json["error"] == "invalid_collection"
    assert result.json["field"] == field
    assert field.split("[")[0] in result.json["message"]
    assert submitter.received == []


def test_oversized_body_is_refused_from_content_length_before_reading(submitter) -> None:
    """WSGI: the body's stream is never read. (ASGI: over a real socket, in test_edge.)"""
    client = falcon.testing.TestClient(create_app(submitter, SETTINGS))

    class Unreadable(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise AssertionError("the body was read")

    result = client.simulate_post(
        "/payloads",
        headers={"Content-Type": "application/json", "Content-Length": "4096"},
        extras={"wsgi.input": Unreadable()},
    )
    assert result.status_code == 413
    assert result.json["error"] == "body_too_large"
    assert "4096" in result.json["message"]


def test_body_just_under_the_limit_is_read(client) -> None:
    body = {"version": "1", "token": "t", "data": [{"pad": "x" * 1900}]}
    assert len(orjson.dumps(body)) <= 2048
    assert post(client, body).status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_other_content_types_get_415(client, submitter, content_type) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    result = client.simulate_post("/payloads", body=orjson.dumps(GOOD), headers=headers)
    assert result.status_code == 415
    assert result.json["error"] == "unsupported_media_type"
    assert submitter.received == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_gets_405_in_json(client, method) -> None:
    result = client.simulate_request(method, "/payloads")
    assert result.status_code == 405
    assert result.json["error"] == "method_not_allowed"
    assert "POST" in result.headers["Allow"]


def test_unknown_path_gets_404_in_json(client) -> None:
    result = client.simulate_get("/nowhere")
    assert result.status_code == 404
    assert result.json["error"] == "not_found"


def test_full_mailboxes_get_503_with_retry_after(client, submitter) -> None:
    submitter.refuse = "all uploader mailboxes are full"
    result = post(client, GOOD)
    assert result.status_code == 503
    assert result.headers["Retry-After"] == "3"
    assert result.json["error"] == "overloaded"
    assert "none of it was accepted" in result.json["message"]


def test_a_bug_behind_the_resource_is_a_json_500_and_the_app_keeps_serving(
    client, submitter
) -> None:
    def broken(version: str, documents: list[Any]) -> int:
        raise KeyError("bug")

    submitter.submit = broken
    result = post(client, GOOD)
    assert result.status_code == 500
    assert result.json["error"] == "internal_error"
    submitter.submit = FakeSubmitter().submit
    assert post(client, GOOD).status_code == 202
