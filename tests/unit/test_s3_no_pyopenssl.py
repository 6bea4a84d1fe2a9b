"""The S3 store keeps botocore off pyOpenSSL (storage/s3.py ``_session``): with aiortc in the recorder image
pyOpenSSL is installed, and botocore would load it (~10 MiB RSS) for the SSLContext the standard library has."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from reel_recorder.storage.s3 import _session
client = _session(True).client("s3", region_name="us-east-1", endpoint_url="https://127.0.0.1:9",
                               aws_access_key_id="a", aws_secret_access_key="b")
import botocore.httpsession, urllib3.util.ssl_
print("OpenSSL" in sys.modules, botocore.httpsession.SSLContext is urllib3.util.ssl_.SSLContext)
"""


@pytest.mark.skipif(importlib.util.find_spec("OpenSSL") is None, reason="pyOpenSSL is not installed here")
def test_an_s3_client_does_not_load_pyopenssl():
    path = [str(REPO / "recorder_image"), str(REPO / "operator")]
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["False", "True"]
