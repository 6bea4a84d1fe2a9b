"""The recorder image trims botocore's data (recorder_image/trim_botocore.py): every S3 operation of the store still
works, a multipart upload (boto3's transfer manager) too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """
import hashlib, json, sys
from pathlib import Path
import botocore.session
from reel_recorder.storage import S3Store
from reel_recorder.storage.s3 import MULTIPART_THRESHOLD

endpoint, bucket, creds, tmp = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4])
services = botocore.session.get_session().get_data("endpoints")["partitions"][0]["services"]
assert sorted(services) == ["s3", "sts"], sorted(services)[:5]  # the trimmed data is what botocore loaded
store = S3Store(bucket, name="primary", endpoint_url=endpoint, credentials=creds, credentials_secret="s3",
                connect_timeout=1, read_timeout=5)
store.check()
data = bytes(range(256)) * 4000
(tmp / "seg.ts").write_bytes(data)
store.put_file("rec/a/seg00000.ts", tmp / "seg.ts", sha256=hashlib.sha256(data).hexdigest())
store.put_bytes("rec/a/index.m3u8", b"#EXTM3U\\n")
assert store.get_bytes("rec/a/index.m3u8") == b"#EXTM3U\\n"
assert store.head("rec/a/seg00000.ts")["ContentLength"] == len(data)
assert store.exists("rec/a/seg00000.ts") and not store.exists("rec/a/none.ts")
big = tmp / "recording.mp4"  # a multipart upload: boto3's transfer manager, write-once
with open(big, "wb") as f:
    f.truncate(MULTIPART_THRESHOLD + 1024)
store.put_file("rec/a/recording.mp4", big)
assert store.stat("rec/a/recording.mp4").size == MULTIPART_THRESHOLD + 1024
assert store.list_keys("rec/a/") == ["rec/a/index.m3u8", "rec/a/recording.mp4", "rec/a/seg00000.ts"]
store.delete("rec/a/recording.mp4")
assert not store.exists("rec/a/recording.mp4")
store.close()
print("ok")
"""


def test_trimmed_botocore_data_serves_every_store_operation(minio, bucket, tmp_path):
    data = tmp_path / "aws-data"
    subprocess.run([sys.executable, str(REPO / "recorder_image" / "trim_botocore.py"), "--out", str(data)],
                   check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-c", SCRIPT, minio.endpoint, bucket, json.dumps(minio.credentials),
                        str(tmp_path)], env={**os.environ, "AWS_DATA_PATH": str(data)}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
