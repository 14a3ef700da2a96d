"""Flyte workflows (flytekit code) that run on plait through `plait flyte import`."""
