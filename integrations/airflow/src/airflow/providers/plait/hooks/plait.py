"""`PlaitHook`: the ``plait`` connection type and clients of the engine it names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow.providers.plait import _steps

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from plait import Client


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def connection_params(conn: Connection) -> _steps.Connection:
    """A ``plait`` Airflow connection as the engine's address and credentials.

    Host and port give the address, the password is the bearer token, and the extras may set
    ``tls`` (true/false), ``ca_cert`` (PEM text or a file of a private CA), ``console_url``
    (base URL of the plait console) and ``namespace`` (request id prefix, when several Airflow
    deployments share one engine).

    Raises:
        ValueError: The connection has no host or port (the message names the connection).
    """
    if not conn.host:
        raise ValueError(f"connection {conn.conn_id!r}: host is empty; set HOST and PORT")
    address = f"{conn.host}:{conn.port}" if conn.port else conn.host
    extra = conn.extra_dejson
    try:
        return _steps.Connection(
            address=address,
            token=conn.password or None,
            tls=_flag(extra.get("tls", False)),
            ca_cert=extra.get("ca_cert") or None,
            console_url=extra.get("console_url") or None,
            namespace=str(extra.get("namespace") or ""),
        )
    except ValueError as err:
        raise ValueError(f"connection {conn.conn_id!r}: {err}") from None


class PlaitHook(BaseHook):
    """Talks to the plait engine of a ``plait`` connection.

    Args:
        plait_conn_id: The connection: host and port of ``plait serve``, the token as password,
            and extras ``tls``, ``ca_cert``, ``console_url`` and ``namespace``.
    """

    conn_name_attr = "plait_conn_id"
    default_conn_name = "plait_default"
    conn_type = "plait"
    hook_name = "plait"

    def __init__(self, plait_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.plait_conn_id = plait_conn_id

    def get_connection_params(self) -> _steps.Connection:
        """The engine's address and credentials."""
        return connection_params(self.get_connection(self.plait_conn_id))

    async def aget_connection_params(self) -> _steps.Connection:
        """The engine's address and credentials, without blocking the event loop."""
        return connection_params(await self.aget_connection(self.plait_conn_id))

    def get_conn(self) -> Client:
        """A new `plait.Client` of the engine (close it, or use it as a context manager)."""
        return self.get_connection_params().client()

    def test_connection(self) -> tuple[bool, str]:
        """Whether the engine answers (the connection form's Test button)."""
        try:
            with self.get_conn() as client:
                client.list_executions(limit=1, page_size=1)
        except Exception as err:
            return False, str(err)
        return True, "plait engine reachable"
