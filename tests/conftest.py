"""Fixtures of every tier: a private PostgreSQL server (started on first use, once per session)
and a fresh database on it per test."""

from tests.support.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]
