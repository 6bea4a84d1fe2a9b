"""Fixtures for the storage tests: real MinIO servers (tests/harness/minio.py) and a fault proxy.

- ``minio`` (session): one MinIO for the whole run; ``bucket`` gives each test a fresh bucket in it.
- ``own_minio`` (function): a MinIO of the test's own, which it may stop and restart (an outage).
- ``proxy`` (function): a FaultProxy in front of ``minio``.
- ``spool`` (function): an empty spool folder.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness.faultproxy import FaultProxy  # noqa: E402
from tests.harness.minio import MinioServer, minio_binary  # noqa: E402

_bucket_ids = itertools.count(1)


@pytest.fixture(scope="session")
def minio_bin() -> Path:
    return minio_binary(build=True)


@pytest.fixture(scope="session")
def minio(minio_bin, tmp_path_factory):
    server = MinioServer(tmp_path_factory.mktemp("minio") / "data", binary=minio_bin)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_minio(minio_bin, tmp_path):
    server = MinioServer(tmp_path / "minio-own" / "data", binary=minio_bin)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(minio) -> str:
    return minio.create_bucket(f"reel-test-{next(_bucket_ids)}-{int(time.time() * 1000) % 10**8}")


@pytest.fixture
def proxy(minio):
    with FaultProxy(minio.port) as p:
        yield p


@pytest.fixture
def spool(tmp_path) -> Path:
    d = tmp_path / "spool"
    d.mkdir()
    return d
