"""plait.flyte's public surface is pinned, and it costs nothing until it is used."""

from __future__ import annotations

import subprocess
import sys

import plait.flyte


def test_all_is_pinned() -> None:
    assert plait.flyte.__all__ == [
        "Options",
        "read_package",
        "translate_package",
        "import_package",
        "to_plait",
        "to_flyte",
        "Package",
        "Translation",
        "ImportResult",
        "FlyteRefusedError",
        "Refusal",
    ]
    for name in plait.flyte.__all__:
        assert getattr(plait.flyte, name) is not None


def test_the_cli_does_not_import_flyteidl() -> None:
    # `plait` hooks in `plait flyte`: without the extra, every other command must still work.
    code = "import sys, plait._cli; assert 'flyteidl' not in sys.modules, 'flyteidl imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_the_extra_the_command_says_what_to_install() -> None:
    code = """
import importlib.abc, sys
class NoFlyteidl(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "flyteidl":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoFlyteidl())
from plait._cli import main
sys.exit(main(["flyte", "import", "missing.tgz"]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'plait[flyte]'" in done.stderr
