"""The ceiling: what an HTTP server alone serves on this machine, with no mailroom behind it.

A small Falcon app that only parses the JSON body (orjson) and answers 202 `{"accepted": n}`,
n the number of payloads in `data`: no auth, no validation, no actors, no S3. Nothing lands.
`make bench` runs it under each server mailroom can use, set up as mailroom sets it up, and
prints each mailroom row's req/s as a share of its server's ceiling.

- granian, 2 workers, Falcon's ASGI app (as mailroom serves under granian):
  `python -m granian --interface asgi --workers 2 --host 127.0.0.1 --port P bench.ceiling:asgi_app`
- granian as WSGI, for comparison (as mailroom served under granian before):
  `python -m granian --interface wsgi --workers 2 --host 127.0.0.1 --port P bench.ceiling:app`
- waitress, 2 processes sharing the port with SO_REUSEPORT (mailroom's `make_server`, 8
  threads each, as WEB_THREADS' default): start `python -m bench.ceiling --port P` twice.
"""

from __future__ import annotations

import argparse

import falcon
import falcon.asgi
import orjson

from web.server import make_server


class Accept:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        collection = orjson.loads(req.bounded_stream.read())
        resp.status = falcon.HTTP_202
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps({"accepted": len(collection["data"])})


def create_app() -> falcon.App:
    app = falcon.App()
    app.add_route("/payloads", Accept())
    return app


app = create_app()


class AcceptAsync:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        collection = orjson.loads(await req.stream.read())
        resp.status = falcon.HTTP_202
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps({"accepted": len(collection["data"])})


def create_asgi_app() -> falcon.asgi.App:
    asgi = falcon.asgi.App()
    asgi.add_route("/payloads", AcceptAsync())
    return asgi


asgi_app = create_asgi_app()


def main() -> None:
    parser = argparse.ArgumentParser(description="the ceiling app under waitress, one process")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads (WEB_THREADS)")
    args = parser.parse_args()
    server = make_server(app, port=args.port, threads=args.threads, host=args.host, reuse_port=True)
    server.run()


if __name__ == "__main__":
    main()
