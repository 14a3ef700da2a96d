"""How `plait run` prints outputs."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

from plait import Directory, File
from plait._cli import _format


class Color(enum.Enum):
    RED = "red"


@dataclass
class Box:
    name: str
    size: int


def test_outputs_print_as_plain_text_or_json() -> None:
    assert _format("Pear") == "Pear"
    assert _format(3) == "3"
    assert _format([1, 2, 3]) == "[1, 2, 3]"
    assert _format({"a": [1.5]}) == '{"a": [1.5]}'
    assert _format(None) == "null"
    assert _format(File("/tmp/x.csv")) == "file:///tmp/x.csv"
    assert _format(Directory("/tmp/out")) == "file:///tmp/out"
    assert _format([File("/tmp/a")]) == '["file:///tmp/a"]'
    assert _format(Color.RED) == '"red"'
    assert _format(Box("b", 2)) == '{"name": "b", "size": 2}'
    assert _format(datetime.timedelta(seconds=90)) == '"0:01:30"'
