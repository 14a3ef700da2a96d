"""Reserved names, defaults and environment variables of the SDK, each defined once here.

The engine keeps its own copy of the names the protocol fixes (`START_NODE`); the SDK never
imports the engine for them, as it imports the engine only for embedded runs.
"""

from __future__ import annotations

SDK_VERSION = "0.1.0"
"""Recorded in every task's runtime metadata (and so part of its content digest)."""

DEFAULT_PROJECT = "default"
DEFAULT_DOMAIN = "development"
DEFAULT_QUEUE = "default"

START_NODE = "start-node"
"""The reserved node id whose outputs are the enclosing workflow's inputs."""
TASK_NODE = "n0"
"""The node id of the one task in the workflow that runs a task on its own."""


def output_name(index: int) -> str:
    """The name of a function's `index`-th output: ``o0``, ``o1``, ..."""
    return f"o{index}"


TASK_TYPE_PYTHON = "python-task"
TASK_TYPE_DYNAMIC = "dynamic"
TASK_TYPE_PROCESS = "process"
LANGUAGE = "python"
"""What a Python task's runtime metadata and a Python worker's hello say."""

LABEL_SOURCE = "plait.source"
"""Execution label: the file (or module) `plait run` loaded, so that a resume can load it."""
LABEL_ENTITY = "plait.entity"
"""Execution label: the name of the workflow, launch plan or task in that file."""

ENV_ENGINE = "PLAIT_ENGINE"
ENV_TOKEN = "PLAIT_TOKEN"
ENV_CA_CERT = "PLAIT_CA_CERT"
ENV_DATA_DIR = "PLAIT_DATA_DIR"
DATA_DIR_NAME = ".plait"
"""The embedded engine's data dir, under the home directory, unless $PLAIT_DATA_DIR says."""

MAX_MESSAGE_BYTES = 64 << 20
"""The largest gRPC message a client or worker sends or accepts by default (the engine's)."""
