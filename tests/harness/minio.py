"""A real MinIO server for tests: started on 127.0.0.1 with a random free port and a data folder.

``stop()`` then ``start()`` on the same folder is a real outage and recovery (MinIO persists to disk); the
port is kept across restarts so clients configured with the endpoint reconnect. The binary is built from
the Go module proxy by hack/build-minio.sh when missing (~5 min the first time, then cached in
$REEL_CACHE/bin).
SSE-S3 works: the server gets a static KMS key (MINIO_KMS_SECRET_KEY).
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-minio.sh"


def cache_dir() -> Path:
    return Path(os.environ.get("REEL_CACHE") or Path.home() / ".cache" / "reel")


def minio_binary(build: bool = True) -> Path:
    """Path of the MinIO binary ($REEL_MINIO_BIN, else $REEL_CACHE/bin/minio), built if missing."""
    env = os.environ.get("REEL_MINIO_BIN")
    if env:
        return Path(env)
    path = cache_dir() / "bin" / "minio"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if not build:
        raise FileNotFoundError(f"MinIO is not built ({path}); run {BUILD_SCRIPT}")
    out = subprocess.run([str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True, timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class MinioServer:
    def __init__(self, data_dir: Path, *, access_key: str = "reeladmin",
                 secret_key: str = "reel-secret-key-1", port: int | None = None,
                 binary: Path | None = None, region: str = "us-east-1", host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir)
        self.host = host  # 127.0.0.1, or a test network's address for clients inside a namespace
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = port or free_port(host)
        self.console_port = free_port(host)
        self.binary = Path(binary) if binary else minio_binary()
        self.region = region
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.minio.log"
        self._log = None
        self.starts = 0

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def credentials(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> MinioServer:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_REGION": self.region,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_CI_CD": "1",
            # a static key for SSE-S3 (AES256) tests; 32 bytes, base64
            "MINIO_KMS_SECRET_KEY": "reel-test-key:" + base64.b64encode(b"r" * 32).decode(),
        })
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(self.binary), "server", str(self.data_dir), "--address", f"{self.host}:{self.port}",
             "--console-address", f"{self.host}:{self.console_port}", "--quiet"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        url = f"{self.endpoint}/minio/health/ready"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"MinIO exited with {self.proc.returncode} at start: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"MinIO not ready after {timeout}s: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL). Its data stays in data_dir."""
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        # wait until the port is really closed, so "stopped" means refused connections
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex((self.host, self.port)) != 0:
                    return
            time.sleep(0.05)

    def restart(self) -> MinioServer:
        self.stop()
        return self.start()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def client(self, endpoint: str | None = None):
        """A boto3 S3 client with the root credentials (for test setup and checks)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=endpoint or self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"},
                          connect_timeout=2, read_timeout=10),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        c = self.client()
        keys: list[str] = []
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def __enter__(self) -> MinioServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
