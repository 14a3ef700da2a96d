"""Workflows used by the tests; importable as `tests.workflows.<module>`."""
