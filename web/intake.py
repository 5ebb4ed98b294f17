"""From a `POST /payloads` request to a checked submission: who sent it, which version, what.

Two body formats: the original JSON document `{"version", "token", "data": [...]}`, and
NDJSON (`Content-Type: application/x-ndjson`, one payload object a line, the version in the
`version` query parameter). Either may be compressed (`Content-Encoding: gzip`, `deflate`,
`zstd`). The token comes from `Authorization: Bearer <token>`, checked before a byte of the
body is read, or, in the JSON format, from the body; when both are given they must agree.

Two steps, the same under either server: `head` checks the headers (so 415, 401 and 413 are
answered before the body is sent), `read` checks the body's bytes once the adapter has them.
"""

from __future__ import annotations

import logging
import re
from typing import Any, NamedTuple

import falcon
import falcon.asgi

from config import Settings
from web.auth import ANYONE, Client, TokenCheck
from web.collection import InvalidCollection, check_version, parse_collection, parse_ndjson
from web.decoding import (
    CorruptBody,
    DecompressedTooLarge,
    UnsupportedEncoding,
    check_encoding,
    decode,
)
from web.errors import JSONError

log = logging.getLogger("web.payloads")
JSON = "application/json"
NDJSON = ("application/x-ndjson", "application/ndjson", "application/jsonlines")
UNAUTHORIZED = "token: not accepted"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mailroom"'}


IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:~+/=-]{1,128}")


class Head(NamedTuple):
    """What the headers decided before a byte of the body was read. (NamedTuples, here and
    below: immutable, and a third of a frozen dataclass's cost to make, once a request.)"""

    media_type: str
    client: Client | None  # None: no Authorization header; the JSON body must name the token
    content_length: int | None
    encoding: str | None
    authorization: str | None
    idempotency_key: str | None
    versions: tuple[str, ...]  # the `version` query parameter(s), for NDJSON


class Submission(NamedTuple):
    version: str
    data: list[dict[str, Any]]
    client: Client
    idempotency_key: str | None = None


class Intake:
    """Reads and checks one request; every failure is a JSONError naming what is wrong.

    Works on the request's headers (the same calls on Falcon's WSGI and ASGI requests) and on
    the body as bytes: the server adapters only differ in how they wait for those bytes.
    """

    def __init__(self, settings: Settings) -> None:
        self._tokens = TokenCheck(settings.ingest_tokens)
        self.max_body = settings.max_body_bytes
        self._max_decompressed = settings.decompressed_limit
        self._max_payloads = settings.max_payloads_per_request

    def head(self, req: falcon.Request | falcon.asgi.Request) -> Head:
        """Check everything the headers say: 415, 401 and 413 before the body is read."""
        media_type = self._media_type(req)
        authorization = req.get_header("Authorization")
        client = self._header_client(authorization, media_type)
        length = req.content_length
        if length is not None and length > self.max_body:
            raise JSONError(
                falcon.HTTP_413,
                "body_too_large",
                f"body is {length} bytes; at most {self.max_body}",
            )
        key = req.get_header("Idempotency-Key")
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            raise JSONError(
                falcon.HTTP_400,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 128 characters of letters, digits and . _ : ~ + "
                "/ = -",
                field="Idempotency-Key",
            )
        versions = () if media_type == JSON else tuple(req.get_param_as_list("version") or ())
        return Head(
            media_type,
            client,
            length,
            req.get_header("Content-Encoding"),
            authorization,
            key,
            versions,
        )

    def read(self, head: Head, body: bytes) -> Submission:
        """The body (at most MAX_BODY_BYTES + 1 bytes of it) as a checked submission."""
        if len(body) > self.max_body:
            raise JSONError(
                falcon.HTTP_413, "body_too_large", f"body exceeds {self.max_body} bytes"
            )
        body = self._decoded(head.encoding, body)
        try:
            if head.media_type == JSON:
                submission = self._json(body, head.client, head.authorization)
            else:
                if len(head.versions) > 1:
                    raise InvalidCollection("version (query parameter)", "is given more than once")
                given = head.versions[0] if head.versions else None
                version = check_version(given, "version (query parameter)")
                data = parse_ndjson(body, max_payloads=self._max_payloads)
                submission = Submission(version, data, head.client or ANYONE)
        except InvalidCollection as error:
            raise JSONError(
                falcon.HTTP_400, "invalid_collection", str(error), field=error.field
            ) from None
        if head.idempotency_key is None:
            return submission
        return submission._replace(idempotency_key=head.idempotency_key)

    def _media_type(self, req: falcon.Request | falcon.asgi.Request) -> str:
        """The body's format, refused with 415 before anything else is read."""
        media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        if media_type != JSON and media_type not in NDJSON:
            raise JSONError(
                falcon.HTTP_415,
                "unsupported_media_type",
                "Content-Type must be application/json or application/x-ndjson, not "
                f"{media_type or 'missing'}",
            )
        try:
            check_encoding(req.get_header("Content-Encoding"))
        except UnsupportedEncoding as error:
            raise JSONError(falcon.HTTP_415, "unsupported_encoding", str(error)) from None
        return media_type

    def _header_client(self, header: str | None, media_type: str) -> Client | None:
        """The client named by `Authorization: Bearer`, checked before the body is read.

        None when the header is absent and the body may still carry the token (JSON).
        """
        if header is None:
            if media_type != JSON and self._tokens.enforced:
                raise JSONError(
                    falcon.HTTP_401,
                    "unauthorized",
                    "an NDJSON body needs Authorization: Bearer <token>",
                    headers=CHALLENGE,
                )
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" and not self._tokens.enforced:
            return None  # no INGEST_TOKENS: another scheme (a proxy's Basic) is none of ours
        client = self._tokens.identify(token.strip()) if scheme.lower() == "bearer" else None
        if client is None:
            log.debug("refused a collection before reading it: its bearer token is not accepted")
            raise JSONError(
                falcon.HTTP_401,
                "unauthorized",
                "Authorization: Bearer <token> not accepted",
                headers=CHALLENGE,
            )
        return client

    def _json(self, body: bytes, client: Client | None, header: str | None) -> Submission:
        collection = parse_collection(
            body, max_payloads=self._max_payloads, token_required=client is None
        )
        if client is None:
            assert collection.token is not None  # required when no header named the client
            client = self._tokens.identify(collection.token)
            if client is None:
                log.debug("refused a collection: its token is not accepted")
                raise JSONError(falcon.HTTP_401, "unauthorized", UNAUTHORIZED, headers=CHALLENGE)
        elif (
            self._tokens.enforced
            and collection.token is not None
            and collection.token != (header or "").partition(" ")[2].strip()
        ):
            raise JSONError(
                falcon.HTTP_401,
                "unauthorized",
                "token: the body's token and the Authorization header's differ",
            )
        return Submission(collection.version, collection.data, client)

    def _decoded(self, encoding: str | None, body: bytes) -> bytes:
        try:
            return decode(body, encoding, self._max_decompressed)
        except DecompressedTooLarge as error:
            raise JSONError(falcon.HTTP_413, "body_too_large", str(error)) from None
        except CorruptBody as error:
            raise JSONError(falcon.HTTP_400, "invalid_encoding", str(error)) from None
        except UnsupportedEncoding as error:
            raise JSONError(falcon.HTTP_415, "unsupported_encoding", str(error)) from None
