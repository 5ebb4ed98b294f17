"""Reading environment variables one at a time, each failure one line naming the variable."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")
MAX_TOKEN_CHARS = 256


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line fit for an operator."""


class EnvReader:
    """Parses one variable at a time and turns any failure into a one-line ConfigError."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def optional(self, name: str) -> str | None:
        return self._raw(name)

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        allowed = (
            f"an integer >= {minimum}"
            if maximum is None
            else (f"an integer from {minimum} to {maximum}")
        )
        return self._parse(name, default, allowed, _bounded_int(minimum, maximum))

    def tokens(self, name: str) -> tuple[str, ...] | None:
        """A comma-separated list of secrets; the error never echoes the value."""
        raw = self._raw(name)
        if raw is None:
            return None
        tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
        if not tokens or any(len(t) > MAX_TOKEN_CHARS for t in tokens):
            raise ConfigError(
                f"{name} is not valid: expected comma-separated tokens of 1 to "
                f"{MAX_TOKEN_CHARS} characters (value not shown: it is secret)"
            )
        return tokens

    def secret(self, name: str, allowed: str, parse: Callable[[str], str]) -> str | None:
        """An optional value that may hold a password (a URL): the error never echoes it."""
        raw = self._raw(name)
        if raw is None:
            return None
        try:
            return parse(raw)
        except ValueError:
            raise ConfigError(
                f"{name} is not valid: expected {allowed} (value not shown: it may hold a password)"
            ) from None

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not minimum <= value <= maximum:  # also refuses nan
                raise ValueError
            return value

        return self._parse(name, default, f"a number from {minimum:g} to {maximum:g}", parse)

    def boolean(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            value = raw.lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off"):
                return False
            raise ValueError

        return self._parse(name, default, "true or false (also 1/0, yes/no, on/off)", parse)

    def choice(
        self, name: str, default: str, choices: tuple[str, ...], *, upper: bool = False
    ) -> str:
        def parse(raw: str) -> str:
            value = raw.upper() if upper else raw.lower()
            if value not in choices:
                raise ValueError
            return value

        return self._parse(name, default, "one of " + ", ".join(choices), parse)

    def parsed(self, name: str, default: T, allowed: str, parse: Callable[[str], T]) -> T:
        """A value of a form of its own: `parse` raises ValueError for a bad one."""
        return self._parse(name, default, allowed, parse)

    def prefix(self, name: str, default: str) -> str:
        def parse(raw: str) -> str:
            if raw.startswith("/") or ".." in raw.split("/"):
                raise ValueError
            return raw if raw.endswith("/") else raw + "/"

        return self._parse(name, default, "a relative key prefix such as 'payloads/'", parse)

    def _parse(self, name: str, default: T, allowed: str, parse: Callable[[str], T]) -> T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not valid: expected {allowed}") from None


def _bounded_int(minimum: int, maximum: int | None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError
        return value

    return parse
