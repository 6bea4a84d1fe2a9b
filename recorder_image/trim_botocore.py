"""Build-time helper of the recorder image: shrink botocore's data to what the recorder uses.

Every S3 client loads botocore's ``endpoints.json`` (every AWS service in every partition) and S3's service
model with all its documentation: about 10 MiB of the recorder's RSS for nothing it needs. This keeps the
services S3 and STS (web-identity credentials) and empties the documentation strings (the keys stay: botocore
reads some of them). Of S3's ~116 operations it keeps those the recorder calls (S3_OPERATIONS) and the shapes
they use: S3's model is then ~0.3 MiB in memory instead of ~1.2, and the client has 13 methods instead of 116
(issue 18). Behaviour is unchanged for STS and for these S3 operations; another S3 operation is not on the client
(``AttributeError``: tests/unit/test_trim_botocore.py checks the list against the code that calls them).

    python trim_botocore.py              # in place, in the botocore this Python imports (the image build)
    python trim_botocore.py --out DIR    # trimmed copies into DIR, used through AWS_DATA_PATH (benchmarks)
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

KEEP = ("s3", "sts")

#: The S3 operations of storage/s3.py, of boto3's transfer manager for a multipart upload (s3transfer: create,
#: upload part, complete, abort, list parts), and of botocore itself (HeadBucket: the region redirector;
#: CreateSession: S3 Express directory buckets; GetBucketLocation: older redirects).
S3_OPERATIONS = ("PutObject", "GetObject", "HeadObject", "DeleteObject", "ListObjectsV2", "CreateMultipartUpload",
                 "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload", "ListParts", "HeadBucket",
                 "CreateSession", "GetBucketLocation",
                 # not the recorder's: examples/minio.yaml's bucket Job runs this image to make its bucket
                 # (its error BucketAlreadyOwnedByYou comes with it)
                 "CreateBucket")


def _read(path: Path) -> tuple[dict, bool]:
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return json.loads(gzip.decompress(gz.read_bytes())), True
    return json.loads(path.read_text()), False


def _write(path: Path, doc: dict, compressed: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, separators=(",", ":")).encode()
    if compressed:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(text))
    else:
        path.write_bytes(text)


def _no_docs(value):
    if isinstance(value, dict):
        return {k: "" if k == "documentation" else _no_docs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_docs(v) for v in value]
    return value


def only_operations(model: dict, operations: tuple[str, ...]) -> dict:
    """A service model with ``operations`` only, and the shapes they reach (inputs, outputs, errors, members)."""
    shapes = model["shapes"]
    keep: set[str] = set()
    todo = []
    for name in operations:
        op = model["operations"][name]  # KeyError: an operation the model does not have (a typo, or renamed)
        todo += [op[k]["shape"] for k in ("input", "output") if k in op] + [e["shape"] for e in op.get("errors", [])]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        shape = shapes[name]
        todo += [shape[k]["shape"] for k in ("member", "key", "value") if k in shape]
        todo += [m["shape"] for m in shape.get("members", {}).values()]
    return {**model, "operations": {k: model["operations"][k] for k in operations},
            "shapes": {k: v for k, v in shapes.items() if k in keep}}


def trim(data: Path, out: Path) -> dict[str, int]:
    """Writes the trimmed files under ``out`` (which may be ``data`` itself); returns their sizes."""
    sizes = {}
    endpoints, gz = _read(data / "endpoints.json")
    for partition in endpoints["partitions"]:
        partition["services"] = {k: v for k, v in partition["services"].items() if k in KEEP}
    _write(out / "endpoints.json", endpoints, gz)
    sizes["endpoints.json"] = len(json.dumps(endpoints))
    for service in KEEP:
        for model in sorted((data / service).glob("*/service-2.json*")):
            version = model.parent.name
            doc, gz = _read(model.parent / "service-2.json")
            doc = _no_docs(only_operations(doc, S3_OPERATIONS) if service == "s3" else doc)
            _write(out / service / version / "service-2.json", doc, gz)
            sizes[f"{service}/{version}/service-2.json"] = len(json.dumps(doc))
    if out == data:  # in the image: the other services' models go
        for entry in data.iterdir():
            if entry.is_dir() and entry.name not in KEEP:
                shutil.rmtree(entry)
    return sizes


def main() -> None:
    import botocore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write trimmed copies here (default: in place)")
    args = ap.parse_args()
    data = Path(botocore.__file__).parent / "data"
    for name, size in trim(data, args.out or data).items():
        print(f"trim_botocore: {name}: {size} bytes")


if __name__ == "__main__":
    main()
