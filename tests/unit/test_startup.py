"""Start-up work: `import plait` loads nothing until a name is used, and the embedded engine
never loads a server's parts (grpc)."""

from __future__ import annotations

import json
import subprocess
import sys


def _modules(code: str, roots: tuple[str, ...]) -> list[str]:
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_plait_loads_no_submodule_and_no_protobuf() -> None:
    assert _modules("import plait", ("plait", "google", "plaitidl")) == ["plait"]
    # A name is loaded on first use, with what it needs and no more.
    loaded = _modules("from plait import PlaitError", ("plait", "grpc"))
    assert "plait._errors" in loaded and "plait._task" not in loaded and "grpc" not in loaded


def test_the_embedded_engine_loads_no_grpc() -> None:
    code = (
        "from pathlib import Path\nimport tempfile\n"
        "from plait import _embedded, _runtime\nfrom plait_engine.app import build_engine\n"
        "build_engine(_embedded.embedded_config(Path(tempfile.mkdtemp())), "
        "task_runner=_runtime.execute)"
    )
    assert _modules(code, ("grpc", "grpc_status")) == []
