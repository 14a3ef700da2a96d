"""A peer's own virtualenv, made on demand by pip at a pinned version and kept in a cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks._peers import Peer


class PeerUnavailableError(Exception):
    """The peer cannot be run here: why, in a few words (shown as "not installed: why")."""


def _env_key(peer: str) -> str:
    return peer.upper().replace("-", "_")


def requirement(peer: Peer, pins: dict[str, str]) -> str:
    """The pip requirement of `peer`: `pins` (``--peer-pin``), ``$PLAIT_BENCH_PIN_<PEER>``, or
    the pinned default."""
    return (
        pins.get(peer.name)
        or os.environ.get(f"PLAIT_BENCH_PIN_{_env_key(peer.name)}")
        or peer.requirement
    )


def given_python(peer: Peer, pythons: dict[str, str]) -> str | None:
    """An interpreter given for `peer` (``--peer-python``, ``$PLAIT_BENCH_PYTHON_<PEER>``):
    used as it is, no venv made.

    Raises:
        PeerUnavailableError: The given interpreter is not there.
    """
    given = pythons.get(peer.name) or os.environ.get(f"PLAIT_BENCH_PYTHON_{_env_key(peer.name)}")
    if given and not shutil.which(given):
        raise PeerUnavailableError(f"{given}: no such Python")
    return given


def _why(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    why = (errors or lines or ["no output"])[-1].removeprefix("ERROR:").strip()
    return why[:160]


def ensure(
    peer: Peer,
    req: str,
    cache: Path,
    *,
    timeout: float = 900,
    log: Callable[[str], None] = print,
) -> str:
    """The Python of `peer`'s venv under ``cache/<peer>/venv``, made (or remade, when its pinned
    requirement changed) with `req`.

    Raises:
        PeerUnavailableError: The venv could not be made or pip could not install `req`.
    """
    home = cache / peer.name
    venv = home / "venv"
    python = venv / "bin" / "python"
    marker = home / "installed.txt"
    if python.exists() and marker.exists() and marker.read_text().strip() == req:
        return str(python)
    log(f"  installing {req} into {venv} ...")
    marker.unlink(missing_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    steps = [
        ("venv", [sys.executable, "-m", "venv", str(venv)], 300.0),
        (
            f"pip install {req}",
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", req],
            timeout,
        ),
    ]
    for what, cmd, limit in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                                  check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise PeerUnavailableError(f"{what}: no answer within {limit:.0f} s") from None
        (home / "install.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise PeerUnavailableError(f"{what}: {_why(proc.stderr or proc.stdout)}")
    marker.write_text(req + "\n")
    return str(python)
