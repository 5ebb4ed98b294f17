from __future__ import annotations

import subprocess
import sys

import pytest

from config import ConfigError, Settings
from tests.support import ROOT


def test_defaults_work_out_of_the_box() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8000
    assert (settings.max_workers, settings.max_queue) == (32, 100)
    assert settings.ack_mode == "queued"
    assert settings.uses_embedded_store
    assert settings.s3_prefix == "payloads/"


def test_waitress_request_threads_default_and_can_be_set() -> None:
    assert Settings.from_env({"SERVER": "waitress"}).threads == 8
    assert Settings.from_env({"SERVER": "waitress", "WEB_THREADS": "32"}).threads == 32
    assert Settings.from_env({"BODY_TIMEOUT": "7.5"}).body_timeout == 7.5
    with pytest.raises(ConfigError, match="BODY_TIMEOUT"):
        Settings.from_env({"BODY_TIMEOUT": "0"})
    with pytest.raises(ConfigError, match="WEB_THREADS"):
        Settings.from_env({"WEB_THREADS": "0"})


def test_values_are_read_and_normalised() -> None:
    settings = Settings.from_env(
        {
            "PORT": "9001",
            "MAX_WORKERS": " 4 ",
            "MAX_QUEUE": "50",
            "ACK_MODE": "STORED",
            "S3_BUCKET": "bucket",
            "S3_PREFIX": "in/coming",
            "LOG_LEVEL": "debug",
        }
    )
    assert (settings.port, settings.max_workers, settings.max_queue) == (9001, 4, 50)
    assert settings.ack_mode == "stored"
    assert settings.s3_prefix == "in/coming/"
    assert settings.log_level == "DEBUG"
    assert not settings.uses_embedded_store


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MAX_WORKERS", "abc", "MAX_WORKERS='abc' is not valid: expected an integer from 1 to"),
        ("MAX_WORKERS", "0", "MAX_WORKERS='0' is not valid: expected an integer from 1 to"),
        ("ACK_MODE", "maybe", "ACK_MODE='maybe' is not valid: expected one of queued, stored"),
        ("PORT", "70000", "PORT='70000' is not valid"),
        ("S3_PREFIX", "../up", "S3_PREFIX='../up' is not valid"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='loud' is not valid"),
    ],
)
def test_bad_values_name_the_variable_and_what_is_allowed(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(expected)


def test_bad_value_stops_the_process_at_start_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailroom", "serve"],
        cwd=ROOT,
        env={"MAX_WORKERS": "abc", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "mailroom: configuration error: MAX_WORKERS='abc' is not valid: "
        "expected an integer from 1 to 1024"
    ]
    assert "Traceback" not in result.stderr


def test_missing_aws_credentials_stop_the_process_at_start_with_one_line(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailroom", "serve"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "S3_BUCKET": "somewhere",
            "SPOOL_DIR": str(tmp_path),
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mailroom: cannot start: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or run where an instance role provides them"
    ]


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_a_spool_dir_that_cannot_be_made_stops_the_process_with_one_line(
    tmp_path, server: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        [sys.executable, "-m", "mailroom", "serve"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "SERVER": server,
            "S3_BUCKET": "somewhere",
            "AWS_ACCESS_KEY_ID": "a",
            "AWS_SECRET_ACCESS_KEY": "b",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SPOOL_DIR": str(blocker / "spool"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if "mailroom:" in line]
    assert lines == [
        f"mailroom: cannot start: SPOOL_DIR={blocker / 'spool'} is not a writable directory "
        "(Not a directory)"
    ], result.stderr
