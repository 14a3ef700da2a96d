"""TLS with a private CA and a token: engine, Python worker and client, as real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from plait import Client, RpcError

from tests.support.servers import ROOT, plait_command

TOKEN = "s3cret-token"


def _certificate(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is needed to make a test certificate"
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


def _wait_serving(address: str, cert: Path) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    deadline = time.monotonic() + 20
    with grpc.secure_channel(address, creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "the TLS engine did not start"
            time.sleep(0.05)


def test_tls_and_token_end_to_end(tmp_path: Path) -> None:
    key, cert = _certificate(tmp_path)
    data = tmp_path / "engine"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    engine = subprocess.Popen(
        plait_command("serve", "--address", "127.0.0.1:0", "--data-dir", str(data),
                      "--tls-cert", str(cert), "--tls-key", str(key), "--token", TOKEN),
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 20
        while not (data / "engine.addr").exists():
            assert time.monotonic() < deadline and engine.poll() is None
            time.sleep(0.05)
        address = (data / "engine.addr").read_text().strip()
        _wait_serving(address, cert)
        worker = subprocess.Popen(
            plait_command("worker", "--engine", address, "--ca-cert", str(cert),
                          "--token", TOKEN, "examples/dynamic_workflow.py"),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out = subprocess.run(
            plait_command("run", "--remote", address, "--ca-cert", str(cert), "--token", TOKEN,
                          "examples/dynamic_workflow.py", "dynamic_wf", "--s1", "Pear",
                          "--s2", "Earth"),
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "3"
        # The same engine refuses a client without the token, and one that does not use TLS.
        with Client(address, ca_cert=cert) as client, pytest.raises(RpcError) as no_token:
            client.list_executions()
        assert no_token.value.code == "UNAUTHENTICATED"
        # (UNAVAILABLE is retried for about three seconds first: the deadline leaves room.)
        with Client(address, token=TOKEN, timeout=20) as plain, pytest.raises(RpcError) as no_tls:
            plain.list_executions()
        assert no_tls.value.code == "UNAVAILABLE"
    finally:
        for p in (worker, engine):
            if p is not None:
                p.kill()
                p.wait(10)
