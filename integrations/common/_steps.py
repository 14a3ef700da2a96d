"""How an orchestrator step launches, re-attaches to, waits for and cancels a plait execution.

One file shared by the Airflow, Dagster and Prefect integrations: each package links it in as
its private ``_steps`` module, so every distribution installs on its own with the same rules.
It uses only plait's public client API (`plait.Client`, its errors, `plaitidl` messages).

The rules:

- **Identity.** A step's request id is derived from the orchestrator's step identity
  (`step_request_id`). `plait.Client.execute` is idempotent on the request id, so a retried
  step gets the execution its earlier attempt started instead of starting a second one.
- **Re-attach or start fresh** (`start_or_attach`). A retry re-attaches while the earlier
  execution is queued, running or succeeded. When it FAILED or was ABORTED, re-attaching would
  fail every retry, so the step starts a fresh execution under the next *generation* of the
  request id (``<id>#2``, ``<id>#3``, ...). Generations are walked in order, so the step always
  lands on the newest one, and no two executions of a step ever run at once.
- **Cancellation** (`wait_for`). When waiting is interrupted by anything but plait itself (the
  orchestrator cancelling the step, a timeout, a signal), the execution is terminated.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from plait import ExecutionFailedError, NotFoundError, RpcError
from plaitidl.core.v1 import execution_pb2, identifier_pb2, interface_pb2
from plaitidl.service.v1 import execution_service_pb2

if TYPE_CHECKING:
    from plait import Client

log = logging.getLogger(__name__)

Execution = execution_service_pb2.Execution
NodeCounts = execution_service_pb2.NodeCounts
_EP = execution_pb2.ExecutionPhase
SUCCEEDED = _EP.EXECUTION_PHASE_SUCCEEDED
FAILED_PHASES = frozenset({_EP.EXECUTION_PHASE_FAILED, _EP.EXECUTION_PHASE_ABORTED})
TERMINAL_PHASES = FAILED_PHASES | {SUCCEEDED}
# Labels every execution started by an integration carries; `STEP_LABEL` holds the step's base
# request id, shared by all of its generations.
ORCHESTRATOR_LABEL = "orchestrator"
STEP_LABEL = "orchestrator-step"
# Request ids stay short enough to log and index; longer step identities are hashed.
_MAX_REQUEST_ID = 200
# Kept as they are in request ids; ":" (between parts), "#" (before a generation) and "%" are
# percent-encoded, so parts never run together.
_SAFE = "!$&'()*+,;=@/-._~"
# A safety net: a step whose executions keep failing is retried by its orchestrator's budget,
# never this many times.
_MAX_GENERATIONS = 1000


@dataclass(frozen=True)
class Connection:
    """Where a plait engine is and how to reach it.

    Attributes:
        address: ``HOST:PORT`` of the engine (``plait serve --address``).
        token: Sent as ``authorization: Bearer <token>`` when the engine requires one.
        tls: Connect with TLS, trusting the system's root certificates.
        ca_cert: The PEM text or file of a private CA to trust (implies TLS).
        console_url: Base URL of the plait console, for links to executions.
        namespace: Prefix of request ids, to tell apart deployments sharing one engine.
    """

    address: str
    token: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_cert: str | None = None
    console_url: str | None = None
    namespace: str = ""

    def __post_init__(self) -> None:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"address {self.address!r}: expected HOST:PORT of a plait engine")

    def client(self, timeout: float = 30) -> Client:
        """A new `plait.Client` (close it, or use it as a context manager)."""
        from plait import Client

        return Client(
            self.address,
            token=self.token or None,
            tls=self.tls,
            ca_cert=ca_cert_file(self.ca_cert),
            timeout=timeout,
        )

    def ca_cert_pem(self) -> bytes | None:
        """The CA certificate's PEM bytes, read from the file when a path was given."""
        path = ca_cert_file(self.ca_cert)
        return None if path is None else Path(path).read_bytes()


_ca_files: dict[str, str] = {}


def ca_cert_file(value: str | None) -> str | None:
    """A file holding the CA certificate `value` (PEM text is written to a private temp file).

    `plait.Client` reads the CA from a file; connections usually hold the PEM text itself.
    """
    if not value or not value.strip():
        return None
    if "-----BEGIN" not in value:
        return os.path.expanduser(value.strip())
    found = _ca_files.get(value)
    if found is None:
        fd, found = tempfile.mkstemp(prefix="plait-ca-", suffix=".pem")
        with os.fdopen(fd, "w") as f:
            f.write(value)
        atexit.register(Path(found).unlink, missing_ok=True)
        _ca_files[value] = found
    return found


def phase_name(phase: int) -> str:
    """``SUCCEEDED``, ``FAILED``, ... for an `ExecutionPhase` value."""
    return _EP.Name(phase).removeprefix("EXECUTION_PHASE_")  # type: ignore[arg-type]


def parse_target(text: str) -> identifier_pb2.Identifier:
    """``project/domain/name[@version]`` as an `Identifier` (resource type unspecified).

    An empty version means the newest registered one.

    Raises:
        ValueError: The text is not of that form (the message names the field ``target``).
    """
    path, _, version = text.strip().partition("@")
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(
            f"target {text!r}: expected 'project/domain/name' or 'project/domain/name@version' "
            "of a registered workflow or launch plan, e.g. 'default/development/my_module.my_wf'"
        )
    project, domain, name = parts
    return identifier_pb2.Identifier(project=project, domain=domain, name=name, version=version)


@dataclass(frozen=True)
class Target:
    """A registered workflow or launch plan, resolved on the engine.

    Attributes:
        id: Its identifier, with its resource type and a pinned version.
        interface: The interface of the workflow it runs.
    """

    id: identifier_pb2.Identifier
    interface: interface_pb2.TypedInterface

    @property
    def display(self) -> str:
        """``project/domain/name@version``."""
        return f"{self.id.project}/{self.id.domain}/{self.id.name}@{self.id.version}"


def resolve_target(client: Client, target: str | identifier_pb2.Identifier) -> Target:
    """Find the workflow or launch plan `target` names and pin its version.

    A text target (``project/domain/name[@version]``) or an identifier without a resource type
    is looked up as a workflow first, then as a launch plan.

    Raises:
        ValueError: `target` is malformed.
        NotFoundError: No workflow or launch plan has that name (and version).
    """
    ident = parse_target(target) if isinstance(target, str) else target
    kind = ident.resource_type
    if kind in (identifier_pb2.RESOURCE_TYPE_UNSPECIFIED, identifier_pb2.RESOURCE_TYPE_WORKFLOW):
        try:
            wf = client.get_workflow(ident)
        except NotFoundError:
            if kind == identifier_pb2.RESOURCE_TYPE_WORKFLOW:
                raise
        else:
            pinned = identifier_pb2.Identifier()
            pinned.CopyFrom(wf.id)
            pinned.resource_type = identifier_pb2.RESOURCE_TYPE_WORKFLOW
            return Target(pinned, wf.interface)
    try:
        lp = client.get_launch_plan(ident)
    except NotFoundError as err:
        where = f"{ident.project}/{ident.domain}/{ident.name}"
        version = f"@{ident.version}" if ident.version else ""
        raise NotFoundError(
            err.code, f"no workflow or launch plan {where}{version} is registered"
        ) from None
    pinned = identifier_pb2.Identifier()
    pinned.CopyFrom(lp.id)
    pinned.resource_type = identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN
    return Target(pinned, client.get_workflow(lp.workflow_id).interface)


def step_request_id(orchestrator: str, *parts: object, namespace: str = "") -> str:
    """The base request id of one orchestrator step.

    Each part is percent-encoded, so ``:`` only separates parts and ``#`` only marks a
    generation; identities too long for a request id keep a readable prefix and a digest.

    Args:
        orchestrator: ``airflow``, ``dagster`` or ``prefect``.
        *parts: The step's identity (e.g. dag id, task id, run id, map index).
        namespace: Tells apart orchestrator deployments sharing one engine.
    """
    fields = [namespace, orchestrator, *parts] if namespace else [orchestrator, *parts]
    key = ":".join(quote(str(p), safe=_SAFE) for p in fields)
    if len(key) <= _MAX_REQUEST_ID:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"{key[: _MAX_REQUEST_ID - len(digest) - 1]}:{digest}"


def generation_request_id(base: str, generation: int) -> str:
    """The request id of a step's `generation`-th execution (the first is `base` itself)."""
    return base if generation <= 1 else f"{base}#{generation}"


@dataclass
class Launched:
    """The execution a step runs, new or re-attached.

    Attributes:
        execution: Its state when launched.
        request_id: The request id that found or created it.
        generation: 1 for the step's first execution, n for its n-th.
        handle: What `plait.Client.wait` and `outputs` take.
    """

    execution: Execution
    request_id: str
    generation: int
    handle: Any = field(repr=False)

    @property
    def name(self) -> str:
        """The execution's name."""
        return str(self.execution.id.name)

    @property
    def key(self) -> dict[str, str]:
        """``{project, domain, name}``, JSON-friendly, to find the execution again."""
        i = self.execution.id
        return {"project": i.project, "domain": i.domain, "name": i.name}


def start_or_attach(
    client: Client,
    target: Target,
    inputs: Mapping[str, object] | None,
    *,
    request_id: str,
    orchestrator: str,
    labels: Mapping[str, str] | None = None,
) -> Launched:
    """Re-attach to the step's current execution, or start one (see the module's rules).

    Args:
        client: A connected client.
        target: What to run (`resolve_target`).
        inputs: Python values by input name, converted with the registered interface.
        request_id: The step's base request id (`step_request_id`).
        orchestrator: Recorded in the ``orchestrator`` label.
        labels: More labels for a new execution.

    Raises:
        InvalidArgumentError: The inputs do not fit the interface (the engine names the input).
        PlaitTypeError: A value cannot be converted to its input's type.
    """
    all_labels = {**(labels or {}), ORCHESTRATOR_LABEL: orchestrator, STEP_LABEL: request_id}
    for generation in range(1, _MAX_GENERATIONS + 1):
        rid = generation_request_id(request_id, generation)
        handle = client.execute(target.id, dict(inputs or {}), request_id=rid, labels=all_labels)
        # A repeated request id answers with the earlier execution as it is now.
        state = handle.execution
        if state.phase not in FAILED_PHASES:
            log.info(
                "plait execution %s of %s (request id %s, %s)",
                state.id.name,
                target.display,
                rid,
                phase_name(state.phase),
            )
            return Launched(state, rid, generation, handle)
        log.info(
            "plait execution %s (request id %s) ended %s; starting a fresh one",
            state.id.name,
            rid,
            phase_name(state.phase),
        )
    raise RuntimeError(f"step {request_id} already has {_MAX_GENERATIONS} failed executions")


def wait_for(
    client: Client,
    launched: Launched,
    *,
    reason: str,
    progress: Callable[[NodeCounts], None] | None = None,
) -> object:
    """Wait for the execution to end and return its outputs as Python values.

    One output is returned as is, several as a dict by name, none as None.

    Args:
        client: A connected client.
        launched: The execution (`start_or_attach`).
        reason: Recorded on the execution (with what interrupted the wait) when it is
            terminated.
        progress: Called with the node counts after each batch of events.

    Raises:
        ExecutionFailedError: It FAILED or was ABORTED (its message names the node and error).
        RpcError: The engine failed a call; the execution is left running.
        BaseException: Whatever interrupted the wait, after the execution was terminated.
    """
    try:
        return client.wait(launched.handle, progress=progress)
    except (ExecutionFailedError, RpcError):
        raise
    except BaseException as interrupted:
        why = f"{reason} ({type(interrupted).__name__})"
        terminate_quietly(client, launched.execution.id, why)
        raise


def terminate_quietly(
    client: Client, execution_id: identifier_pb2.ExecutionIdentifier, reason: str
) -> None:
    """Terminate an execution, logging (not raising) when the engine cannot be reached."""
    try:
        state = client.terminate(execution_id, reason=reason)
    except RpcError as err:
        log.warning("could not terminate plait execution %s: %s", execution_id.name, err)
        return
    log.info(
        "terminated plait execution %s (%s): %s", state.id.name, phase_name(state.phase), reason
    )


def counts_dict(counts: NodeCounts) -> dict[str, int]:
    """Node counts by phase, as plain ints."""
    return {
        "total": counts.total,
        "succeeded": counts.succeeded,
        "running": counts.running,
        "failed": counts.failed,
        "skipped": counts.skipped,
        "cached": counts.cached,
    }


def failed_error(execution: Execution) -> ExecutionFailedError:
    """The SDK's error for a failed or aborted execution (its message names node and error)."""
    return ExecutionFailedError(execution.id.name, phase_name(execution.phase), execution.error)


def execution_url(console_url: str | None, execution: Execution) -> str | None:
    """The execution's page in the plait console, when its base URL is configured."""
    if not console_url:
        return None
    i = execution.id
    return f"{console_url.rstrip('/')}/executions/{i.project}/{i.domain}/{i.name}"
