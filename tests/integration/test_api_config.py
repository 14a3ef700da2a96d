"""`plait serve` settings: defaults < TOML file < PLAIT_* environment < flags (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from plait_engine.config import ConfigError, EngineConfig, load_config


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "plait.toml"
    path.write_text(
        'address = "0.0.0.0:9000"\nmax_nodes = 10\nmax_depth = 5\nlease_duration = 4.5\n'
        'data_dir = "/srv/plait"\n'
    )
    env = {"PLAIT_MAX_NODES": "20", "PLAIT_MAX_DEPTH": "7", "PLAIT_CONFIG": "/ignored.toml"}
    config = load_config(path, env=env, overrides={"max_depth": 9, "token": None})
    assert config.address == "0.0.0.0:9000"  # file
    assert config.lease_duration == 4.5 and config.data_dir == Path("/srv/plait")  # file
    assert config.max_nodes == 20  # env beats file
    assert config.max_depth == 9  # flag beats env
    assert config.token is None and config.system_retries == EngineConfig().system_retries


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("max_message_bytes = 1024\n")
    assert load_config(env={"PLAIT_CONFIG": str(path)}).max_message_bytes == 1024
    assert load_config(env={}).max_message_bytes == 64 << 20


def test_unknown_key_and_bad_values_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("max_nodez = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'max_nodez'"):
        load_config(path, env={})
    path.write_text('max_nodes = "many"\n')
    with pytest.raises(ConfigError, match="max_nodes must be a number"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="environment: max_depth"):
        load_config(env={"PLAIT_MAX_DEPTH": "deep"})
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        load_config(env={}, overrides={"tls_cert": "/c.pem"})


def test_every_setting_has_a_flag_and_help() -> None:
    import dataclasses

    from plait_engine.config import HELP

    assert set(HELP) == {f.name for f in dataclasses.fields(EngineConfig)}
    config = load_config(
        env={},
        overrides={"retention": "30d", "allow_process": ["/opt/a/*", "/usr/bin/env"]},
    )
    assert config.retention == 30 * 86400
    assert config.allow_process == ("/opt/a/*", "/usr/bin/env")
    with pytest.raises(ConfigError, match="retention must be a duration"):
        load_config(env={"PLAIT_RETENTION": "forever"})


def test_blob_url_from_file_env_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('blob_url = "s3://team-bucket/plait"\nblob_endpoint = "http://minio:9000"\n')
    config = load_config(path, env={})
    assert (config.blob_url, config.blob_endpoint) == (
        "s3://team-bucket/plait",
        "http://minio:9000",
    )
    assert load_config(path, env={"PLAIT_BLOB_URL": "/mnt/shared"}).blob_url == "/mnt/shared"
    flags = load_config(path, env={}, overrides={"blob_url": " file:///mnt/blobs "})
    assert flags.blob_url == "file:///mnt/blobs"
    assert load_config(env={}).blob_url == ""  # DATA_DIR/blobs
    with pytest.raises(ConfigError, match="blob_url must be a folder"):
        load_config(env={"PLAIT_BLOB_URL": "ftp://host/x"})
    with pytest.raises(ConfigError, match="absolute path"):
        load_config(env={"PLAIT_BLOB_URL": "relative/blobs"})


def test_serve_refuses_a_blob_url_it_cannot_open(tmp_path: Path) -> None:
    import subprocess
    import sys

    from plait_engine.app import build_engine

    with pytest.raises(ConfigError, match="bucket"):
        build_engine(EngineConfig(data_dir=tmp_path, blob_url="s3://"))
    out = subprocess.run(
        [sys.executable, "-m", "plait._cli", "serve", "--data-dir", str(tmp_path),
         "--blob-url", "ftp://host/x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode != 0 and "blob_url must be a folder" in out.stderr, out.stderr
