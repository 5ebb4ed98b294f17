# The project's metadata is in pyproject.toml (PEP 621). This shim is kept for tools and
# habits that still run `python setup.py ...`; it adds nothing.
from setuptools import setup

setup()
