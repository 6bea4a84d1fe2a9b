"""The S3 store keeps botocore off pyOpenSSL (storage/s3.py ``_keep_pyopenssl_out``): with aiortc in the recorder
image pyOpenSSL is installed, and botocore would load it (~4 MiB anonymous, with cryptography) for the SSLContext the
standard library has. And it imports boto3's package (its resource API, s3transfer) only for a multipart upload."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from reel_recorder.storage import S3Store
S3Store("b", endpoint_url="https://127.0.0.1:9", credentials={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
S3Store("b", name="backup", endpoint_url="https://127.0.0.1:9")  # the standard credential chain: a fresh session
import botocore.httpsession, urllib3.util.ssl_
print("OpenSSL" in sys.modules, botocore.httpsession.SSLContext is urllib3.util.ssl_.SSLContext)
"""

PROBE_BOTO3 = """
import sys
from reel_recorder.storage import S3Store
store = S3Store("b", endpoint_url="http://127.0.0.1:9", credentials={"AWS_ACCESS_KEY_ID": "a",
                                                                   "AWS_SECRET_ACCESS_KEY": "b"})
print(type(store._client).__module__, sorted(m for m in ("boto3", "s3transfer", "multiprocessing") if m in sys.modules))
"""


@pytest.mark.skipif(importlib.util.find_spec("OpenSSL") is None, reason="pyOpenSSL is not installed here")
def test_an_s3_client_does_not_load_pyopenssl():
    path = [str(REPO / "recorder_image"), str(REPO / "operator")]
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["False", "True"]


def test_an_s3_client_is_created_without_boto3s_package():
    """A store's client is botocore's S3 client, as ``boto3.client`` returns it; boto3's package, s3transfer and
    multiprocessing (~2 MiB) come with the first multipart upload only (tests/integration/storage: multipart)."""
    path = [str(REPO / "recorder_image"), str(REPO / "operator")]
    out = subprocess.run([sys.executable, "-c", PROBE_BOTO3], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["botocore.client", "[]"]
