"""mailroom: HTTP collections in, one S3 object per payload out, through a bounded actor pool."""

__version__ = "0.2.0"
