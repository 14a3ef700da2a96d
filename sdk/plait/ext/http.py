"""HTTP tasks: call a web service, with the task's inputs in the URL and body, and its typed
output read from the response.

```python
from plait.ext.http import HTTPTask

get_user = HTTPTask(
    "users.get",
    url="https://api.example.com/users/{user_id}",
    headers={"Authorization": "Bearer {secret:api-token}"},
    inputs={"user_id": int},
    output=User,  # a dataclass: the JSON object's fields
    secrets=["api-token"],
)
```

- ``url``: ``{name}`` placeholders take inputs (URL-quoted); only ``http`` and ``https``.
- ``headers``: values may hold ``{secret:NAME}`` (a secret the task names) and ``{name}``.
- ``body``: ``auto`` (the inputs not used in the URL or headers as a JSON object, for POST,
  PUT and PATCH), ``none``, ``inputs`` (likewise, for any method), or ``input:NAME`` (the JSON
  of one input).
- The output: a `str` output is the response's text, `bytes` its body; any other type is read
  from the JSON response (at ``output_path``, dotted, when set); several outputs from the JSON
  object's keys of their names.
- A 5xx, 408 or 429 answer, a timeout and a refused connection are recoverable (retried within
  the task's ``retries``); any other 4xx is not.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from plaitidl.core.v1 import tasks_pb2, types_pb2

from plait._files import Directory, File
from plait._task import Timeout
from plait.ext._config import Problem
from plait.ext._task import PluginTask
from plait.ext._tasktype import RunContext, TaskFailedError, TaskType

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_RETRYABLE_4XX = {408, 425, 429}
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_ERROR_BODY = 300
_ST = types_pb2.SimpleType

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


@dataclasses.dataclass
class HTTPConfig:
    """The configuration of an ``http`` task (see the module)."""

    url: str
    method: Method = "GET"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: str = "auto"
    timeout_seconds: float = 30.0
    output_path: str = ""


def _placeholders(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def _inputs_of(template: tasks_pb2.TaskTemplate) -> list[str]:
    return [v.name for v in template.interface.inputs.variables]


def _used(config: HTTPConfig) -> set[str]:
    """Inputs the URL and headers use."""
    names = set(_placeholders(config.url))
    for value in config.headers.values():
        names.update(p for p in _placeholders(value) if not p.startswith("secret:"))
    return names


class HTTP(TaskType[HTTPConfig]):
    """The ``http`` task type (see the module)."""

    name = "http"
    config = HTTPConfig

    def check(self, config: HTTPConfig, template: tasks_pb2.TaskTemplate) -> list[Problem]:
        """Placeholders name inputs and named secrets; the URL is http(s); the body exists."""
        inputs = set(_inputs_of(template))
        secrets = {s.name for s in template.metadata.secrets}
        out: list[Problem] = []
        scheme = urllib.parse.urlsplit(config.url).scheme
        if scheme not in ("http", "https"):
            out.append(("custom.url", f"must start with http:// or https://, got {config.url!r}"))
        for p in _placeholders(config.url):
            if p not in inputs:
                out.append(("custom.url", f"placeholder {{{p}}} names no input"))
        for key, value in config.headers.items():
            for p in _placeholders(value):
                name = p.removeprefix("secret:")
                if p.startswith("secret:") and name not in secrets:
                    out.append(
                        (f"custom.headers.{key}", f"secret {name!r} is not in metadata.secrets")
                    )
                elif not p.startswith("secret:") and p not in inputs:
                    out.append((f"custom.headers.{key}", f"placeholder {{{p}}} names no input"))
        body = config.body
        if body not in ("auto", "none", "inputs") and not (
            body.startswith("input:") and body.removeprefix("input:") in inputs
        ):
            out.append(
                (
                    "custom.body",
                    f"must be auto, none, inputs or input:NAME (an input), got {body!r}",
                )
            )
        if config.timeout_seconds <= 0:
            out.append(("custom.timeout_seconds", "must be positive"))
        return out

    def run(self, config: HTTPConfig, inputs: dict[str, Any], context: RunContext) -> Any:
        """Send the request; read the output from the response."""
        url = _PLACEHOLDER.sub(
            lambda m: urllib.parse.quote(_text(inputs[m.group(1)]), safe=""), config.url
        )
        headers = {k: self._header(v, inputs, context) for k, v in config.headers.items()}
        data = _body(config, inputs)
        if data is not None:
            headers.setdefault("Content-Type", "application/json")
        status, body, content_type = _send(
            config.method, url, headers, data, context.remaining(config.timeout_seconds)
        )
        print(f"{config.method} {url}: {status}, {len(body)} bytes")  # to the attempt's log
        return _output(context.template, config, body, content_type)

    @staticmethod
    def _header(value: str, inputs: dict[str, Any], context: RunContext) -> str:
        def fill(m: re.Match[str]) -> str:
            p = m.group(1)
            if p.startswith("secret:"):
                return context.secret(p.removeprefix("secret:"))
            return _text(inputs[p])

        return _PLACEHOLDER.sub(fill, value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, File | Directory):
        return value.uri
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _body(config: HTTPConfig, inputs: dict[str, Any]) -> bytes | None:
    body = config.body
    if body == "none" or (body == "auto" and config.method not in _BODY_METHODS):
        return None
    if body.startswith("input:"):
        value = inputs.get(body.removeprefix("input:"))
    else:
        used = _used(config)
        value = {k: v for k, v in inputs.items() if k not in used}
        if body == "auto" and not value:
            return None
    return json.dumps(value, default=_jsonable).encode()


def _send(
    method: str, url: str, headers: dict[str, str], data: bytes | None, timeout: float
) -> tuple[int, bytes, str]:
    import urllib.error
    import urllib.request  # here: loading the plugin must stay cheap

    what = f"{method} {url}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        text = exc.read()[:_ERROR_BODY].decode("utf-8", "replace")
        code = exc.code
        recoverable = code >= 500 or code in _RETRYABLE_4XX
        raise TaskFailedError(
            f"HTTP{code}", f"{what} answered {code} {exc.reason}: {text}", recoverable=recoverable
        ) from None
    except TimeoutError as exc:
        raise TaskFailedError("Timeout", f"{what}: no answer within {timeout:g}s ({exc})") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise TaskFailedError("Timeout", f"{what}: no answer within {timeout:g}s") from None
        raise TaskFailedError("ConnectionError", f"{what}: {exc.reason}") from None


def _output(
    template: tasks_pb2.TaskTemplate, config: HTTPConfig, body: bytes, content_type: str
) -> Any:
    variables = list(template.interface.outputs.variables)
    if not variables:
        return None
    if len(variables) == 1 and not config.output_path:
        simple = variables[0].type.simple
        if simple == _ST.SIMPLE_TYPE_STRING and content_type != "application/json":
            return body.decode("utf-8", "replace")
        if simple == _ST.SIMPLE_TYPE_BINARY:
            return body
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise TaskFailedError(
            "BadResponse", f"the response is not JSON ({content_type}): {exc}", recoverable=False
        ) from None
    for part in filter(None, config.output_path.split(".")):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TaskFailedError(
                "BadResponse", f"the response has no {config.output_path!r}", recoverable=False
            )
    return value


class HTTPTask(PluginTask):
    """A task that calls a web service (see `plait.ext.http`).

    Args:
        name: The registered name.
        url: The URL; ``{input}`` placeholders.
        method: GET, POST, PUT, PATCH, DELETE or HEAD.
        headers: Header values; ``{secret:NAME}`` and ``{input}`` placeholders.
        body: ``auto``, ``none``, ``inputs`` or ``input:NAME``.
        inputs: Input names and types.
        output: The type of the one output (``o0``), read from the response.
        outputs: Named outputs, read from the JSON object's keys, instead of `output`.
        secrets: The secrets the headers use.
        timeout_seconds: Limit of one request.
        output_path: Dotted path of the output in the JSON response (``data.items.0``).
        retries: Extra attempts after recoverable failures (5xx, timeouts).
        timeout: Limit per attempt.
        queue: The worker queue, when workers serve ``http``.
    """

    # A public constructor of keyword-only options: see `PluginTask`.
    def __init__(  # noqa: PLR0913
        self,
        name: str,
        url: str,
        *,
        method: Method = "GET",
        headers: Mapping[str, str] | None = None,
        body: str = "auto",
        inputs: Mapping[str, Any] | None = None,
        output: Any = None,
        outputs: Mapping[str, Any] | None = None,
        secrets: Sequence[str] = (),
        timeout_seconds: float = 30.0,
        output_path: str = "",
        retries: int = 0,
        timeout: Timeout = None,
        queue: str = "default",
    ) -> None:
        config = HTTPConfig(
            url=url, method=method, headers=dict(headers or {}), body=body,
            timeout_seconds=timeout_seconds, output_path=output_path,
        )  # fmt: skip
        super().__init__(
            HTTP, name, config, inputs=inputs, output=output, outputs=outputs, secrets=secrets,
            retries=retries, timeout=timeout, queue=queue,
        )  # fmt: skip


__all__ = ["HTTP", "HTTPConfig", "HTTPTask"]
