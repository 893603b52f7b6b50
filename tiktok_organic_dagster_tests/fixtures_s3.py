"""S3 emulator fixtures: a real ``moto_server`` process for Delta tables on ``s3://``.

moto runs as a subprocess, not ``ThreadedMotoServer``: several deltalake calls (``history()``,
``alter.set_table_properties()``) hold the GIL while waiting on HTTP and deadlock an in-process server.
moto honours ``If-None-Match`` on PutObject, so concurrent Delta commits behave as on real S3.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 endpoint with fixed dummy credentials and one bucket."""

    endpoint: str
    bucket: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """Environment a process needs so delta-rs (and boto3) talk to this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def storage_options(self) -> dict[str, str]:
        """The same settings as deltalake ``storage_options`` (for direct deltalake calls in tests)."""
        opts = {k: v for k, v in self.env().items() if k != "AWS_EC2_METADATA_DISABLED"}
        return {**opts, "timeout": "20s", "retry_timeout": "30s"}

    def client(self):  # boto3 client types are generated at run time
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def list_keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_command(port: int) -> list[str]:
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not os.path.exists(exe):
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return [exe, "-H", "127.0.0.1", "-p", str(port)]


def _wait_ready(proc: subprocess.Popen, endpoint: str, log: Path) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer within {READY_TIMEOUT_S}s; log:\n{log.read_text()}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Start ``moto_server`` on a free port (retrying a port race), create a bucket, stop it at the end."""
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    for _ in range(3):
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        with open(log, "ab") as out:
            proc = subprocess.Popen(_moto_command(port), stdout=out, stderr=subprocess.STDOUT, env=env)
        if _wait_ready(proc, endpoint, log):
            break
    else:
        raise RuntimeError(f"moto_server failed to start; log:\n{log.read_text()}")
    server = S3Server(endpoint=endpoint, bucket=f"lake-{uuid.uuid4().hex[:8]}")
    try:
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def s3_root(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://bucket/<prefix>`` root; AWS_* env vars point delta-rs and boto3 at moto."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return f"s3://{s3_server.bucket}/t-{uuid.uuid4().hex[:10]}"
