"""The baseline: the Go write-up's naive design in Python, a thread per payload calling boto3.

A plain Falcon app: parse the collection, start one thread per payload that puts it to S3
with a default boto3 client (created once and shared, which is already kinder than making
one per thread), answer 200 at once. Nothing bounds the threads. Serve with
`python -m bench.naive` (PORT, S3_BUCKET, AWS_ENDPOINT_URL_S3 from the environment).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

import boto3
import falcon
import orjson
from waitress import serve


class NaivePayloads:
    def __init__(self, client, bucket: str) -> None:  # type: ignore[no-untyped-def]
        self._client = client
        self._bucket = bucket

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        collection = orjson.loads(req.bounded_stream.read())
        for payload in collection["data"]:
            threading.Thread(target=self._upload, args=(payload,), daemon=True).start()
        resp.status = falcon.HTTP_200

    def _upload(self, payload: dict) -> None:
        self._client.put_object(
            Bucket=self._bucket, Key=f"naive/{uuid.uuid4()}.json", Body=orjson.dumps(payload)
        )


def main() -> None:
    # waitress warns once per queued request under load; that logging would slow it down.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3"))
    app = falcon.App()
    app.add_route("/payloads", NaivePayloads(client, os.environ["S3_BUCKET"]))
    serve(app, host="127.0.0.1", port=int(os.environ["PORT"]), threads=8, _quiet=True)


if __name__ == "__main__":
    main()
