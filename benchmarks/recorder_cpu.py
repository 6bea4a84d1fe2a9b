"""Benchmark: CPU and memory of the recorder per recorded participant (not a test; prints measurements).

For N in 1, 2, 4, 8: a private Janus in a network namespace, N aiortc publishers (640x480@30 H.264 near the
room's 500 kb/s cap + Opus), and ``reel-recorder`` recording them into a local folder. The recorder's CPU time
(user + sys from /proc) is sampled over a steady window once everybody publishes; RSS is its peak (VmHWM).

    sudo python benchmarks/recorder_cpu.py [--counts 1,2,4,8] [--window 20] [--store local|s3]

``--store s3`` uploads to a MinIO process (as in a pod) instead of writing a local folder. The recorder image has
no pyOpenSSL (aiortc brings it into the dev environment, and botocore imports it when present, ~9 MiB) and
trims botocore's data (recorder_image/trim_botocore.py): the benchmark does both for the recorder it runs, so
the RSS is what the image would use.

Needs root (network namespaces) and Debian's janus. The publishers share the machine: on 2 cores, 8 publishers
cost more than one core themselves, so the numbers of the large runs include some scheduling noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.janus import Janus  # noqa: E402
from tests.harness.minio import MinioServer, minio_binary  # noqa: E402
from tests.harness.netns import TestNetwork  # noqa: E402
from tests.harness.procs import PublisherProcess, publisher_argv  # noqa: E402
from tests.support.recorder_proc import RecorderRun, session_manifest  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def image_like_env(workdir: Path) -> dict:
    """As in the recorder image: no pyOpenSSL (an ``OpenSSL`` package that cannot be imported) and botocore's
    data trimmed by recorder_image/trim_botocore.py (through AWS_DATA_PATH)."""
    stub = workdir / "no-pyopenssl" / "OpenSSL"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text('raise ImportError("pyOpenSSL is not in the recorder image")\n')
    data = workdir / "aws-data"
    if not data.is_dir():
        subprocess.run([sys.executable, str(REPO / "recorder_image" / "trim_botocore.py"), "--out", str(data)],
                       check=True, capture_output=True)
    return {"PYTHONPATH": os.pathsep.join([str(stub.parent), str(REPO)]), "AWS_DATA_PATH": str(data)}


def run_one(net: TestNetwork, janus: Janus, n: int, window: float, workdir: Path, store=None) -> dict:
    room = 7000 + n
    janus.create_room(room, videocodec="h264", audiocodec="opus", fir_freq=2, publishers=16, bitrate=500000)
    env = {"REEL_ROOM_ADMIN_KEY": janus.admin_key, **image_like_env(workdir)}
    extra, storage = [], None
    if store is not None:
        bucket = store.create_bucket(f"bench-{n}")
        secrets = workdir / f"s3-secret-{n}"
        secrets.mkdir()
        for k, v in store.credentials.items():
            (secrets / k).write_text(v)
        storage = {"bucket": bucket, "endpoint": store.endpoint}
        extra = ["--storage-secrets", str(secrets)]
    manifest = session_manifest(janus.ws_url, room, recording={"maxIdleSeconds": 60, "segmentSeconds": 4},
                                storage=storage)
    rec = RecorderRun(net.popen, manifest, workdir / f"n{n}", env=env, output=store is None, extra_args=extra)
    rec.wait_event("joined", timeout=30)
    pubs = [PublisherProcess(net, publisher_argv(janus.ws_url, room, display=f"p{i}", duration=window + 30),
                             workdir / f"pub{n}-{i}.log", f"p{i}") for i in range(n)]
    try:
        for p in pubs:
            p.wait_event("published", timeout=90)
        rec.wait_event("participants", timeout=30, predicate=lambda e: e["status"]["activeParticipants"] == n)
        time.sleep(3)  # forwards set up, first keyframes in
        pid = rec.proc.pid
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(window)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        rss_now = status_kib(pid, "VmRSS")
        share = (c1 - c0) / (t1 - t0) * 100
        rec.terminate()
        status = rec.wait(120)
        hwm = None
    finally:
        for p in pubs:
            p.kill()
        rec.kill()
    segments = status["upload"]["segments"]
    return {"participants": n, "cpu_percent_of_one_vcpu": round(share, 2),
            "cpu_percent_per_participant": round(share / n, 2), "rss_mib": round(rss_now / 1024, 1),
            "peak_rss_mib": hwm, "segments": segments, "phase": status["phase"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,2,4,8")
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--store", choices=["local", "s3"], default="local")
    args = ap.parse_args()
    results = []
    with TestNetwork() as net, tempfile.TemporaryDirectory(prefix="reel-bench-") as tmp:
        janus = Janus(net, Path(tmp) / "janus")
        janus.start()
        store = None
        if args.store == "s3":
            store = MinioServer(Path(tmp) / "minio", binary=minio_binary(build=True), host=net.host_addr)
            store.start()
        try:
            for n in (int(x) for x in args.counts.split(",")):
                r = run_one(net, janus, n, args.window, Path(tmp), store)
                results.append({**r, "store": args.store})
                print(json.dumps(results[-1]), flush=True)
        finally:
            janus.stop()
            if store is not None:
                store.stop()
    print(f"\nstore: {args.store}")
    print("\nparticipants | recorder CPU (% of one vCPU) | per participant | RSS MiB")
    for r in results:
        print(f"{r['participants']:>12} | {r['cpu_percent_of_one_vcpu']:>28} | {r['cpu_percent_per_participant']:>15} |"
              f" {r['rss_mib']:>7}")


if __name__ == "__main__":
    main()
