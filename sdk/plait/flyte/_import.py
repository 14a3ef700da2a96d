"""`import_package`: register what ``pyflyte package`` produced, embedded or on a server."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from plaitidl.core.v1 import identifier_pb2

from plait.flyte import _engine
from plait.flyte._errors import FlyteRefusedError, Refusal
from plait.flyte._ids import Options
from plait.flyte._package import extract_sources, read_package, translate_package


@dataclass
class ImportResult:
    """What an import registered.

    Attributes:
        options: The options used (with the version and sources filled in).
        created: Identifiers of templates registered now.
        unchanged: Identifiers that were registered already with identical content.
        notices: Fields ignored because they change nothing a local process computes.
    """

    options: Options
    created: list[identifier_pb2.Identifier]
    unchanged: list[identifier_pb2.Identifier]
    notices: list[Refusal]


def import_package(
    path: str | Path,
    options: Options | None = None,
    *,
    data_dir: Path | None = None,
    remote: _engine.Remote | None = None,
    sources_root: Path | None = None,
    strict: bool = False,
) -> ImportResult:
    """Translate a pyflyte package and register it.

    Args:
        path: The ``.tgz`` written by ``pyflyte package``.
        options: Identity defaults and task environments; an empty version becomes the
            package's content digest (16 hex digits).
        data_dir: The embedded engine's data dir (default ``$PLAIT_DATA_DIR`` or ``~/.plait``).
        remote: A server to register on instead.
        sources_root: Where a ``--fast`` package's sources are unpacked (default
            ``DATA_DIR/flyte-sources``); with `remote`, give a folder the server can read.
        strict: Refuse the fields that would only be ignored (resources, pod labels, ...).

    Raises:
        FlyteRefusedError: Some entity uses fields plait has no equivalent for.
        PlaitError: The file is no pyflyte package, or registration failed.
    """
    pkg = read_package(path)
    opts = options or Options()
    if not opts.version:
        opts = dataclasses.replace(opts, version=pkg.digest[:16])
    if pkg.fast_archive is not None:
        root = sources_root or (data_dir or _engine.default_data_dir()) / "flyte-sources"
        root.mkdir(parents=True, exist_ok=True)
        src = extract_sources(pkg.fast_archive, root.resolve())
        opts = dataclasses.replace(opts, sources=(str(src), *opts.sources))
    translation = translate_package(pkg, opts)
    if strict and translation.notices:
        raise FlyteRefusedError(translation.notices)
    created, unchanged = _engine.register(translation.request, data_dir=data_dir, remote=remote)
    return ImportResult(opts, created, unchanged, translation.notices)
