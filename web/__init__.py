"""HTTP: the Falcon app that accepts collections. Knows nothing of S3."""

from web.app import create_app, create_asgi_app

__all__ = ["create_app", "create_asgi_app"]
