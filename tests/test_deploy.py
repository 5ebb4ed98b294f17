"""A deploy as Heroku's Python buildpack makes one, offline.

The buildpack finds `requirements.txt`, runs `pip install -r requirements.txt` into a fresh
Python (mailroom itself is not installed: nothing in that file names it), and the dyno runs
the Procfile's `web:` command from the source tree with `PORT` set. Here: a fresh virtualenv,
the same pip command against the wheelhouse `make install` builds (never an index), then the
`web:` command, parsed from the Procfile, run by bash from a copy of the source tree without
the tests, the bench or any virtualenv. It must accept a collection, store it in the S3
stand-in, and exit 0 on SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT, free_port, sink_env, wait_for

# `make install` builds it inside the virtualenv that runs the tests; MAILROOM_WHEELHOUSE overrides.
WHEELHOUSE = Path(os.environ.get("MAILROOM_WHEELHOUSE") or Path(sys.prefix) / "wheelhouse")

# What a slug or an image does not need: version control, virtualenvs, caches, build output,
# and the trees only development uses (the service must not import them).
NOT_SHIPPED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "spool",
    "build",
    "dist",
    "*.egg-info",
    ".ci",
    "bench",
    "docs",
    "tests",
)


def procfile_command(process_type: str = "web") -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, colon, command = line.partition(":")
        if colon and name.strip() == process_type:
            return command.strip()
    raise AssertionError(f"the Procfile declares no {process_type!r} process")


def pins() -> dict[str, str]:
    """requirements.txt as {canonical name: exact version}; every line must be a `==` pin."""
    pinned = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        found = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert found, f"requirements.txt: {line!r} is not pinned as name==version"
        pinned[canonicalize_name(found.group(1))] = found.group(2)
    return pinned


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without pip's settings or any Python path that could reach the checkout."""
    dropped = ("PIP_", "PYTHON", "VIRTUAL_ENV", "MAILROOM_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    env["PIP_CONFIG_FILE"] = os.devnull  # nor the machine's pip.conf (indexes, find-links)
    return {**env, **extra}


def run(venv: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
        check=False,
    )


def test_requirements_pin_what_pyproject_asks_for() -> None:
    """Each runtime dependency in pyproject.toml is pinned, within its range (else `make
    requirements`); no test or dev tool is, and no extra of the embedded store."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in requirements.txt: make requirements"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements.txt pins {name}=={pinned[name]}, outside {spec}: make requirements"
        )
    for tool in ("moto", "pytest", "ruff", "hypothesis", "mailroom"):
        assert tool not in pinned
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


@pytest.fixture(scope="module")
def slug(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(app dir, virtualenv): the source tree copied as a build would see it, and a fresh
    Python with `pip install -r requirements.txt` from the wheelhouse, nothing else."""
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.skip(
            f"no wheelhouse at {WHEELHOUSE}: `make install` builds it "
            "(pip wheel -r requirements.txt); this test installs from it, offline"
        )
    base = tmp_path_factory.mktemp("deploy")
    app = base / "app"
    shutil.copytree(ROOT, app, ignore=NOT_SHIPPED)
    venv = base / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env())
    installed = run(
        venv,
        "pip",
        "install",
        "--no-index",
        "--find-links",
        str(WHEELHOUSE),
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--quiet",
        "-r",
        str(app / "requirements.txt"),
    )
    assert installed.returncode == 0, (
        f"pip install -r requirements.txt from {WHEELHOUSE} failed (is the wheelhouse older "
        f"than requirements.txt? `make install` rebuilds it):\n{installed.stdout}{installed.stderr}"
    )
    yield app, venv


def test_requirements_install_is_complete_and_does_not_install_the_app(slug) -> None:
    _app, venv = slug
    frozen = run(venv, "pip", "freeze", "--disable-pip-version-check")
    installed = {}
    for line in frozen.stdout.splitlines():
        name, _, version = line.partition("==")
        installed[canonicalize_name(name)] = version
    # Exactly the pins: nothing pulled in that requirements.txt does not name (an unpinned
    # transitive dependency would float on the next deploy), nothing more, not mailroom.
    assert installed == pins()
    assert run(venv, "pip", "check", "--disable-pip-version-check").returncode == 0
    assert run(venv, "pip", "show", "mailroom").returncode != 0


def test_procfile_web_command_serves_from_the_source_tree(slug, sink, tmp_path) -> None:
    app, venv = slug
    command = procfile_command("web")
    port = free_port()
    spool = tmp_path / "spool"
    env = clean_env(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",  # as the buildpack's profile does
        PORT=str(port),
        **sink_env(sink, spool),
    )
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+") as output:
        # Its own session, so SIGTERM can go to every process of it, as Heroku signals every
        # process in a dyno.
        service = subprocess.Popen(
            ["bash", "-c", command],
            cwd=app,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

        def log() -> str:
            output.seek(0)
            return output.read()

        def answering() -> bool:
            if service.poll() is not None:
                raise AssertionError(
                    f"`{command}` exited at start ({service.returncode}):\n{log()}"
                )
            try:
                requests.get(url + "/payloads", timeout=1)
            except requests.ConnectionError:
                return False
            return True

        try:
            wait_for(answering, timeout=30, interval=0.1)
            answer = requests.post(
                url + "/payloads",
                data=b'{"version":"1","token":"t","data":[{"n":1}]}',
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            assert answer.status_code == 202, f"{answer.status_code} {answer.text}\n{log()}"
            assert answer.json() == {"accepted": 1}

            def stored() -> bool:
                bodies = [obj.body for obj in list(sink.objects.values())]
                return any(
                    body.startswith(b"{") and orjson.loads(body) == {"n": 1} for body in bodies
                )

            wait_for(stored, timeout=10)
        finally:
            if service.poll() is None:
                os.killpg(service.pid, signal.SIGTERM)
            try:
                code = service.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, signal.SIGKILL)
                service.wait()
                raise AssertionError(f"no exit within 40 s of SIGTERM:\n{log()}") from None
        assert code == 0, f"exit {code} after SIGTERM:\n{log()}"
        assert "Traceback" not in log(), log()
    assert not list(spool.glob("*.spool")), "nothing should have been spooled"
