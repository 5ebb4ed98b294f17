"""Configuration: one typed object, read once from the environment at start."""

from config.settings import ConfigError, Settings

__all__ = ["ConfigError", "Settings"]
