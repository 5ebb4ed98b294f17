"""`GET /openapi.json`: the HTTP contract as OpenAPI 3.1, with this instance's limits filled in.

Tests check real answers against these schemas, so the document cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

import falcon

from config import Settings
from web.collection import MAX_TOKEN_CHARS, MAX_VERSION_CHARS, VERSION


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    answer = _json(description, "Error")
    if retry_after:
        answer["headers"] = {
            "Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait"}
        }
    return answer


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def build_openapi(settings: Settings) -> dict[str, Any]:
    request_id = {"$ref": "#/components/parameters/RequestId"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailroom",
            "version": "1.0",
            "description": "Collections of payloads in; every payload into S3.",
        },
        "paths": {
            "/payloads": {
                "post": {
                    "summary": "Accept a collection of payloads, whole or not at all",
                    "parameters": [
                        request_id,
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "description": "the payloads' version: required with an NDJSON body",
                            "schema": {
                                "type": "string",
                                "maxLength": MAX_VERSION_CHARS,
                                "pattern": f"^{VERSION.pattern}$",
                            },
                        },
                        {
                            "name": "Authorization",
                            "in": "header",
                            "required": False,
                            "description": "Bearer <token>: checked before the body is read; "
                            "required with an NDJSON body when INGEST_TOKENS is set",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "Content-Encoding",
                            "in": "header",
                            "required": False,
                            "description": "gzip, deflate or zstd; expanded at most to "
                            f"{settings.decompressed_limit} bytes",
                            "schema": {"enum": ["gzip", "x-gzip", "deflate", "zstd", "identity"]},
                        },
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "description": "a resent collection with the same key is stored "
                            "once (one object per payload mode)",
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:~+/=-]{1,128}$"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Collection"}
                            },
                            "application/x-ndjson": {
                                "schema": {
                                    "type": "string",
                                    "description": "one JSON object (one payload) a line",
                                }
                            },
                        },
                    },
                    "responses": {
                        "202": _json("every payload is in an uploader's mailbox", "Accepted"),
                        "200": _json("ACK_MODE=stored: every payload is in S3", "Stored"),
                        "400": _error("the body is not a valid collection; `field` says where"),
                        "401": _error("the token is not accepted"),
                        "413": _error(
                            "the body is larger than MAX_BODY_BYTES, or expands past "
                            "MAX_DECOMPRESSED_BYTES"
                        ),
                        "415": _error("an unsupported Content-Type or Content-Encoding"),
                        "429": _error(
                            "this tenant is over TENANT_RATE or holds its TENANT_SHARE; refused "
                            "whole",
                            retry_after=True,
                        ),
                        "503": _error(
                            "refused whole (full, no uploader, shutting down), or with "
                            "ACK_MODE=stored accepted but not yet confirmed in S3",
                            retry_after=True,
                        ),
                    },
                }
            },
            "/livez": {
                "get": {
                    "summary": "Liveness: 200 while the process works (draining too)",
                    "responses": {
                        "200": {"description": "alive"},
                        "503": {"description": "the supervision tree gave up: restart it"},
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: 200 when traffic should come here",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready; `reasons` lists why"},
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness and load of this instance",
                    "responses": {
                        "200": _json("serving", "Health"),
                        "503": _json("draining, or no uploader slot left", "Health"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics, all processes of this instance",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "parameters": {
                "RequestId": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "required": False,
                    "description": "kept if 1-128 plain characters, else replaced; echoed back",
                    "schema": {"type": "string"},
                }
            },
            "schemas": {
                "Collection": {
                    "type": "object",
                    "required": ["version", "data"],
                    "description": "`token` is required unless sent as Authorization: Bearer",
                    "properties": {
                        "version": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_VERSION_CHARS,
                            "pattern": f"^{VERSION.pattern}$",
                        },
                        "token": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_CHARS},
                        "data": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": settings.max_payloads_per_request,
                            "items": {"type": "object"},
                        },
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["accepted"],
                    "properties": {"accepted": {"type": "integer", "minimum": 1}},
                    "additionalProperties": False,
                },
                "Stored": {
                    "type": "object",
                    "required": ["accepted", "stored", "receipts", "repeat"],
                    "properties": {
                        "accepted": {"type": "integer", "minimum": 1},
                        "stored": {"type": "integer", "minimum": 1},
                        "receipts": {
                            "type": "array",
                            "description": "each payload's object key (and line in a batch)",
                            "items": {
                                "type": ["object", "null"],
                                "properties": {
                                    "key": {"type": "string"},
                                    "line": {"type": ["integer", "null"], "minimum": 1},
                                },
                            },
                        },
                        "repeat": {
                            "type": "boolean",
                            "description": "every payload was already stored under its key",
                        },
                    },
                    "additionalProperties": False,
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                        "accepted": {"type": "integer"},
                        "stored": {"type": "integer"},
                        "spooled": {"type": "integer"},
                        "pending": {
                            "type": "integer",
                            "description": "accepted, not yet durable: held in memory, retried",
                        },
                    },
                    "additionalProperties": False,
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "draining", "slots_alive", "slots", "spool"],
                    "properties": {
                        "status": {"enum": ["ok", "degraded", "unavailable"]},
                        "draining": {"type": "boolean"},
                        "gave_up": {
                            "type": ["string", "null"],
                            "description": "why the supervision tree gave up (then 503)",
                        },
                        "router_alive": {"type": "boolean"},
                        "held": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "payloads accepted and not yet durable",
                        },
                        "drain": {
                            "type": "object",
                            "description": "one object per payload: S3's measured pace and "
                            "how many payloads may be held at that pace (503 beyond it)",
                            "properties": {
                                "payloads_per_second": {"type": ["number", "null"]},
                                "held_limit": {"type": ["integer", "null"]},
                                "uploads_measured": {"type": "integer", "minimum": 0},
                            },
                        },
                        "slots_alive": {"type": "integer", "minimum": 0},
                        "slots": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["slot", "alive", "depth"],
                                "properties": {
                                    "slot": {"type": "integer"},
                                    "alive": {"type": "boolean"},
                                    "depth": {"type": "integer", "minimum": 0},
                                },
                            },
                        },
                        "spool": {
                            "type": "object",
                            "required": ["files", "bytes", "writable"],
                            "properties": {
                                "files": {"type": "integer", "minimum": 0},
                                "bytes": {"type": "integer", "minimum": 0},
                                "oldest_age_seconds": {
                                    "type": ["number", "null"],
                                    "description": "age of the oldest object waiting",
                                },
                                "writable": {
                                    "type": "boolean",
                                    "description": "false while spool writes fail",
                                },
                                "error": {"type": ["string", "null"]},
                            },
                        },
                        "pid": {"type": "integer"},
                    },
                },
            },
        },
    }


class OpenAPIResource:
    def __init__(self, settings: Settings) -> None:
        self._document = build_openapi(settings)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._document
