"""recorder_image/trim_botocore.py keeps of S3's model the operations the recorder calls (S3_OPERATIONS): every
operation storage/s3.py calls on its client, and those of boto3's transfer manager for a multipart upload, must be
among them, and a client made from the trimmed data must have them (tests/integration/storage/
test_storage_trimmed_botocore.py runs them against MinIO)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
S3_SOURCE = REPO / "recorder_image" / "reel_recorder" / "storage" / "s3.py"


def _trim_module():
    spec = importlib.util.spec_from_file_location("trim_botocore", REPO / "recorder_image" / "trim_botocore.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_operation_the_store_calls_is_kept():
    called = set(re.findall(r"_client\.([a-z0-9_]+)\(", S3_SOURCE.read_text()))
    called.discard("close")
    # s3transfer's upload of one file object: create, upload part, complete, abort on failure (s3transfer/upload.py,
    # tasks.py); put_object for a small one
    called |= {"create_multipart_upload", "upload_part", "complete_multipart_upload", "abort_multipart_upload"}
    kept = {_snake(op) for op in _trim_module().S3_OPERATIONS}
    assert called <= kept, sorted(called - kept)


def test_the_example_bucket_job_finds_what_it_calls():
    """examples/minio.yaml makes its bucket with the recorder image's boto3: its calls and the errors it catches
    must survive the trim (a cluster test caught CreateBucket missing)."""
    script = (REPO / "examples" / "minio.yaml").read_text()
    called = set(re.findall(r"\bs3\.([a-z_]+)\(", script))
    caught = set(re.findall(r"s3\.exceptions\.([A-Za-z]+)", script))
    assert called and caught
    kept = {_snake(op) for op in _trim_module().S3_OPERATIONS}
    assert called <= kept, sorted(called - kept)
    model = json.loads(_trimmed_model())
    assert caught <= set(model["shapes"]), sorted(caught - set(model["shapes"]))


def _trimmed_model() -> str:
    import gzip
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, str(REPO / "recorder_image" / "trim_botocore.py"), "--out", out],
                       check=True, capture_output=True)
        [path] = [p for p in Path(out).rglob("service-2.json*") if "/s3/" in str(p)]
        data = path.read_bytes()
        return (gzip.decompress(data) if path.suffix == ".gz" else data).decode()


def test_a_client_from_the_trimmed_data_has_those_operations_only(tmp_path):
    trim = _trim_module()
    subprocess.run([sys.executable, str(REPO / "recorder_image" / "trim_botocore.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    probe = (
        "import json, sys\n"
        "from reel_recorder.storage import S3Store\n"
        "store = S3Store('b', endpoint_url='http://127.0.0.1:9', credentials={'AWS_ACCESS_KEY_ID': 'a',"
        " 'AWS_SECRET_ACCESS_KEY': 'b'})\n"
        "print(json.dumps(sorted(store._client.meta.service_model.operation_names)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "AWS_DATA_PATH": str(tmp_path),
                              "PYTHONPATH": f"{REPO / 'recorder_image'}:{REPO / 'operator'}"}).stdout
    assert json.loads(out) == sorted(trim.S3_OPERATIONS)
