"""gRPC channels to an engine: plain, or TLS with the system roots or a given CA."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc


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
        options: gRPC channel options.
    """
    if ca_cert is not None:
        roots = Path(ca_cert).read_bytes()
        creds = grpc.ssl_channel_credentials(root_certificates=roots)
        return grpc.secure_channel(address, creds, options=list(options))
    if tls:
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(), options=list(options))
    return grpc.insecure_channel(address, options=list(options))
