"""gRPC channels to an engine: plain, or TLS with the system roots or a given CA."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

# A call that fails with UNAVAILABLE before the engine answered (its replica was killed, the
# connection broke) is tried again, on whichever address of the target answers: every call
# that changes something carries a request id or is idempotent, so a repeat is safe. Five
# tries over about three seconds cover a replica's death; longer outages reach the caller.
_RETRY_UNAVAILABLE = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def open_channel(
    address: str,
    *,
    tls: bool = False,
    ca_cert: str | Path | None = None,
    options: Sequence[tuple[str, int | str]] = (),
) -> grpc.Channel:
    """A channel to `address`; TLS when `tls` or `ca_cert` is given.

    Args:
        address: ``HOST:PORT`` of the engine.
        tls: Use TLS, trusting the system's root certificates.
        ca_cert: A PEM file of the certificate authority to trust instead (implies TLS), for
            engines with a private or self-signed certificate.
        options: gRPC channel options. Unless they say otherwise, a call that fails with
            UNAVAILABLE before the engine answered is retried (five tries, about 3 s).
    """
    import grpc  # (~0.2 s) when a channel opens: describing an `Endpoint` needs none

    given = dict(options)
    given.setdefault("grpc.enable_retries", 1)
    given.setdefault("grpc.service_config", _RETRY_UNAVAILABLE)
    options = list(given.items())
    if ca_cert is not None:
        roots = Path(ca_cert).read_bytes()
        creds = grpc.ssl_channel_credentials(root_certificates=roots)
        return grpc.secure_channel(address, creds, options=list(options))
    if tls:
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(), options=list(options))
    return grpc.insecure_channel(address, options=list(options))


def message_options(max_bytes: int) -> list[tuple[str, int | str]]:
    """Channel options raising both message size limits to `max_bytes`."""
    return [
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.max_send_message_length", max_bytes),
    ]


@dataclass(frozen=True)
class Endpoint:
    """An engine and how to reach it.

    Attributes:
        address: ``HOST:PORT`` of the engine.
        token: Sent as ``authorization: Bearer <token>`` when the engine requires one.
        tls: Use TLS, trusting the system's root certificates.
        ca_cert: A PEM file of the certificate authority to trust instead (implies TLS).
    """

    address: str
    token: str | None = None
    tls: bool = False
    ca_cert: str | Path | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata that carries the token (none without one)."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel(self, options: Sequence[tuple[str, int | str]] = ()) -> grpc.Channel:
        """A new channel to the engine with these gRPC `options`."""
        return open_channel(self.address, tls=self.tls, ca_cert=self.ca_cert, options=options)
