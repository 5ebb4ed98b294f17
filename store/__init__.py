"""Where payloads end up: S3 keys, encoding, the boto3 client. Knows nothing of actors."""

from store.connect import make_s3_client, open_s3
from store.keys import ObjectKey, sanitise_version
from store.objects import S3Object
from store.s3 import S3Store, StoreError

__all__ = [
    "ObjectKey",
    "S3Object",
    "S3Store",
    "StoreError",
    "make_s3_client",
    "open_s3",
    "sanitise_version",
]
