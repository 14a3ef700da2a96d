"""One distribution, three import roots: installable from a built wheel into a fresh venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPORTS = (
    "import plaitidl.core.v1.dynamic_job_pb2, plaitidl.service.v1.worker_service_pb2_grpc; "
    "import plait, plait_engine.app; print(sorted(plait.__all__)[:2])"
)


def test_wheel_installs_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("plait-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    # Run from an empty folder so nothing of the checkout can be imported by accident.
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", IMPORTS],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "['AlreadyExistsError', 'Client']"
    for module in ("plaitidl", "plait", "plait_engine"):
        located = subprocess.run(
            [str(venv / "bin" / "python"), "-c", f"import {module}; print({module}.__file__)"],
            cwd=tmp_path, check=True, capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip
        assert str(venv) in located, f"{module} imported from {located}"
    cli = subprocess.run(
        [str(venv / "bin" / "plait", ), "--help"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert "run" in cli.stdout and "serve" in cli.stdout and "worker" in cli.stdout


def test_editable_install_imports_live_sources() -> None:
    # The dev install (`pip install -e '.[dev]'`) must import all three roots from the checkout.
    import plait
    import plait_engine
    import plaitidl

    assert Path(plait.__file__).is_relative_to(ROOT / "sdk")
    assert Path(plait_engine.__file__).is_relative_to(ROOT / "engine")
    assert Path(plaitidl.__file__).is_relative_to(ROOT / "gen" / "python")
