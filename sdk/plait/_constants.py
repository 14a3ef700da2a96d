"""Constants shared by the SDK's serializer and runtime."""

from __future__ import annotations

SDK_VERSION = "0.1.0"
"""Recorded in every task's runtime metadata (and so part of its content digest)."""

DEFAULT_PROJECT = "default"
DEFAULT_DOMAIN = "development"
START_NODE = "start-node"
"""The reserved node id whose outputs are the enclosing workflow's inputs."""

DEFAULT_QUEUE = "default"
