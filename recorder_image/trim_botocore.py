"""Build-time helper of the recorder image: shrink botocore's data to what the recorder uses.

Every S3 client loads botocore's ``endpoints.json`` (every AWS service in every partition) and S3's service
model with all its documentation: about 10 MiB of the recorder's RSS for nothing it needs. This keeps the
services S3 and STS (web-identity credentials) and empties the documentation strings (the keys stay: botocore
reads some of them). Behaviour is unchanged for S3 and STS.

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
            doc = _no_docs(doc)
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
