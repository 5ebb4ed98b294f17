"""orjson for every JSON body Falcon reads or writes: faster than the stdlib, same results."""

from __future__ import annotations

import falcon
import orjson


def json_handlers() -> dict[str, falcon.media.BaseHandler]:
    handler = falcon.media.JSONHandler(dumps=_dumps, loads=orjson.loads)
    return {falcon.MEDIA_JSON: handler}


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()
