"""Values large enough to live in the blob store: a text over the payload threshold (256 KiB, kept
inline in messages but stored behind a pointer) and bytes over the inline limit (offloaded,
read and written through DataService). Every value derives from a seed, so each task checks
what it received."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

from plait import dynamic, task, workflow

TEXT_CHARS = 400_000
DATA_BYTES = 1_500_000


def text_of(seed: int) -> str:
    """The medium value of a seed."""
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghij") for _ in range(TEXT_CHARS))


def data_of(seed: int) -> bytes:
    """The large value of a seed."""
    return random.Random(-seed).randbytes(DATA_BYTES)


def digest_of(seed: int) -> str:
    """What `check` returns for a seed."""
    return hashlib.sha256(text_of(seed).encode() + data_of(seed)).hexdigest()


def text_digest_of(seed: int) -> str:
    """What `check_text` returns for a seed."""
    return hashlib.sha256(text_of(seed).encode()).hexdigest()


def _pause() -> None:
    # Long enough for a test to kill the engine owning the execution in the middle.
    marker = os.environ.get("PLAIT_TEST_MARKERS")
    if marker:
        (Path(marker) / f"blob.{time.monotonic_ns()}.{os.getpid()}").touch()
    time.sleep(float(os.environ.get("PLAIT_TEST_BLOB_PAUSE", "0")))


@task
def make_text(seed: int) -> str:
    return text_of(seed)


@task
def make_data(seed: int) -> bytes:
    return data_of(seed)


@task
def check(seed: int, text: str, data: bytes) -> str:
    _pause()
    if text != text_of(seed) or data != data_of(seed):
        raise ValueError(f"seed {seed}: the values arrived changed")
    return hashlib.sha256(text.encode() + data).hexdigest()


@task
def check_text(seed: int, text: str) -> str:
    _pause()
    if text != text_of(seed):
        raise ValueError(f"seed {seed}: the text arrived changed")
    return hashlib.sha256(text.encode()).hexdigest()


@dynamic
def checks(seed: int, copies: int, text: str) -> list[str]:
    # The text is bound inline in the spec (copies x 400 KB): the spec is stored as a blob.
    return [check_text(seed=seed, text=text) for _ in range(copies)]


@workflow
def blobs_wf(seed: int, copies: int) -> tuple[str, bytes, str, list[str]]:
    text = make_text(seed=seed)
    data = make_data(seed=seed)
    first = check(seed=seed, text=text, data=data)
    return text, data, first, checks(seed=seed, copies=copies, text=text)
