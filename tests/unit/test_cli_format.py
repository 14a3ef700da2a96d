"""How `plait run` prints outputs."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

from plait import Directory, File
from plait._cli.common import format_value


class Color(enum.Enum):
    RED = "red"


@dataclass
class Box:
    name: str
    size: int


def test_outputs_print_as_plain_text_or_json() -> None:
    assert format_value("Pear") == "Pear"
    assert format_value(3) == "3"
    assert format_value([1, 2, 3]) == "[1, 2, 3]"
    assert format_value({"a": [1.5]}) == '{"a": [1.5]}'
    assert format_value(None) == "null"
    assert format_value(File("/tmp/x.csv")) == "file:///tmp/x.csv"
    assert format_value(Directory("/tmp/out")) == "file:///tmp/out"
    assert format_value([File("/tmp/a")]) == '["file:///tmp/a"]'
    assert format_value(Color.RED) == '"red"'
    assert format_value(Box("b", 2)) == '{"name": "b", "size": 2}'
    assert format_value(datetime.timedelta(seconds=90)) == '"0:01:30"'
