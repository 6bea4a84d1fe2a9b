"""Benchmark: CPU and memory of the recorder per recorded participant (not a test; prints measurements).

For N in 1, 2, 4, 8: a private Janus in a network namespace, N aiortc publishers (640x480@30 H.264 near the
room's 500 kb/s cap + Opus), and ``reel-recorder`` recording them into a local folder. Over a steady window once
everybody publishes, the CPU time (user + sys from /proc) of the recorder, of Janus and of the publishers is
sampled separately, so the recorder's share is its own; the machine's busy share over the same window shows
where it saturates. Memory: the recorder's RSS and PSS (/proc/PID/smaps_rollup) at the end of the window.

    sudo python benchmarks/recorder_cpu.py [--counts 1,2,4,8] [--window 20] [--store local|s3]
        [--segment-format ts,fmp4] [--ingest forward,webrtc] [--publishers aiortc|ffmpeg]
        [--tree before=/tmp/reel-before --tree after=.]

``--publishers ffmpeg``: cheap publishers (benchmarks/cheap_publishers.py, ~0.45 % of a vCPU each) instead of aiortc
ones, so that counts of 16, 24, 32 fit on a small machine.

``--store s3`` uploads to a MinIO process (as in a pod) instead of writing a local folder. The recorder image
trims botocore's data (recorder_image/trim_botocore.py): the benchmark does the same for the recorder it runs, so
the RSS is what the image would use (botocore does not load pyOpenSSL: storage/s3.py).

``--tree LABEL=DIR`` (repeatable) runs the recorder from another checkout of the repository (DIR holds
``recorder_image/`` and ``operator/``, e.g. ``git archive HEAD recorder_image operator | tar -x -C DIR``): the
trees take turns at each count, in the same Janus and the same window of the machine, so two versions are
compared under the same load (the machine may be shared: compare CPU seconds, not wall time).

Needs root (network namespaces) and Debian's janus. The publishers share the machine: on 2 cores, 8 publishers
cost more than one core themselves, so the numbers of the large runs include some scheduling noise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.cheap_publishers import CheapPublisher, make_clip  # noqa: E402
from tests.harness.janus import Janus  # noqa: E402
from tests.harness.minio import MinioServer, minio_binary  # noqa: E402
from tests.harness.netns import TestNetwork  # noqa: E402
from tests.harness.procs import PublisherProcess, publisher_argv  # noqa: E402
from tests.support.recorder_proc import RecorderRun, session_manifest  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + sys CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rollup_kib(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup: Rss, Pss, Private_* ... in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0])
    return out


def image_like_env(workdir: Path, tree: Path) -> dict:
    """As in the recorder image: botocore's data trimmed by recorder_image/trim_botocore.py (through
    AWS_DATA_PATH); the recorder's code from ``tree``. (pyOpenSSL is in the image, for aiortc; storage/s3.py keeps
    botocore from loading it, as here.)"""
    data = workdir / "aws-data"
    if not data.is_dir():
        subprocess.run([sys.executable, str(REPO / "recorder_image" / "trim_botocore.py"), "--out", str(data)],
                       check=True, capture_output=True)
    path = [str(tree / "recorder_image"), str(tree / "operator"), str(REPO)]
    return {"PYTHONPATH": os.pathsep.join(path), "AWS_DATA_PATH": str(data)}


def run_one(net: TestNetwork, janus: Janus, n: int, window: float, workdir: Path, store=None, *,
            label: str = "current", tree: Path = REPO, room: int = 7000, env: dict | None = None,
            segment_format: str = "ts", ingest: str = "forward", cheap: bool = False) -> dict:
    janus.create_room(room, videocodec="h264", audiocodec="opus", fir_freq=2, publishers=n + 2, bitrate=500000)
    env = {"REEL_ROOM_ADMIN_KEY": janus.admin_key, **image_like_env(workdir, tree), **(env or {})}
    run_dir = workdir / f"{label}-n{n}-{room}"
    extra, storage = [], None
    if store is not None:
        bucket = store.create_bucket(f"bench-{room}")
        secrets = run_dir / "s3-secret"
        secrets.mkdir(parents=True)
        for k, v in store.credentials.items():
            (secrets / k).write_text(v)
        storage = {"bucket": bucket, "endpoint": store.endpoint}
        extra = ["--storage-secrets", str(secrets)]
    manifest = session_manifest(janus.ws_url, room, recording={"maxIdleSeconds": 60, "segmentSeconds": 4,
                                                                          "segmentFormat": segment_format,
                                                                          "ingest": ingest},
                                storage=storage)
    rec = RecorderRun(net.popen, manifest, run_dir, env=env, output=store is None, extra_args=extra)
    rec.wait_event("joined", timeout=30)
    if cheap:
        clip = make_clip(workdir)
        pubs = [CheapPublisher(net, janus, room, clip, f"p{i}", run_dir / f"pub-{i}.log") for i in range(n)]
    else:
        pubs = [PublisherProcess(net, publisher_argv(janus.ws_url, room, display=f"p{i}", duration=window + 30),
                                 run_dir / f"pub-{i}.log", f"p{i}") for i in range(n)]
    try:
        for p in pubs:
            if not cheap:
                p.wait_event("published", timeout=90)
        rec.wait_event("participants", timeout=30, predicate=lambda e: e["status"]["activeParticipants"] == n)
        time.sleep(3)  # forwards set up, first keyframes in
        pid = rec.proc.pid
        print(f"[bench] {label} n={n} recorder pid {pid}: window of {window:.0f} s starts", file=sys.stderr,
              flush=True)
        pub_pids = [p.proc.pid for p in pubs]

        def sample():
            return (cpu_seconds(pid), cpu_seconds(janus.proc.pid), sum(cpu_seconds(q) for q in pub_pids),
                    machine_busy(), time.monotonic())

        r0, j0, p0, (b0, a0), t0 = sample()
        time.sleep(window)
        r1, j1, p1, (b1, a1), t1 = sample()
        mem = rollup_kib(pid)
        hwm = status_kib(pid, "VmHWM")
        threads = status_kib(pid, "Threads")
        rec.terminate()
        status = rec.wait(120)
    finally:
        for p in pubs:
            p.kill()
        rec.kill()
        with contextlib.suppress(Exception):
            janus.destroy_room(room)
    wall = t1 - t0
    share = (r1 - r0) / wall * 100
    return {"tree": label, "format": segment_format, "ingest": ingest, "participants": n,
            "cpu_percent_of_one_vcpu": round(share, 2),
            "cpu_percent_per_participant": round(share / n, 2),
            "janus_percent_per_participant": round((j1 - j0) / wall * 100 / n, 2),
            "publishers_percent_per_participant": round((p1 - p0) / wall * 100 / n, 2),
            "machine_busy_percent": round((b1 - b0) / max(a1 - a0, 1) * 100, 1),
            "rss_mib": round(mem["Rss"] / 1024, 1), "pss_mib": round(mem["Pss"] / 1024, 1),
            "anon_mib": round(mem.get("Pss_Anon", 0) / 1024, 1), "peak_rss_mib": round(hwm / 1024, 1),
            "threads": threads, "segments": status["upload"]["segments"], "phase": status["phase"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,2,4,8")
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--store", choices=["local", "s3"], default="local")
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR",
                    help="run the recorder from DIR (repeatable: the trees take turns at each count)")
    ap.add_argument("--tree-env", action="append", default=[], metavar="LABEL:NAME=VALUE",
                    help="an environment variable for the recorder of one tree (e.g. to compare malloc settings)")
    ap.add_argument("--segment-format", default="ts", metavar="ts,fmp4",
                    help="spec.recording.segmentFormat (comma-separated: the formats take turns at each count, "
                         "after the trees; fmp4 keeps Opus as sent, ts re-encodes it as AAC)")
    ap.add_argument("--ingest", default="forward", metavar="forward,webrtc",
                    help="spec.recording.ingest (comma-separated: the ingests take turns at each count, after the "
                         "formats)")
    ap.add_argument("--publishers", choices=["aiortc", "ffmpeg"], default="aiortc",
                    help="ffmpeg: cheap publishers (a pre-encoded clip looped into Janus remote publishers: "
                         "benchmarks/cheap_publishers.py), for counts beyond what aiortc publishers allow")
    args = ap.parse_args()
    formats = args.segment_format.split(",")
    trees = [(t.partition("=")[0], Path(t.partition("=")[2]).resolve()) for t in args.tree] or [("current", REPO)]
    tree_env: dict[str, dict[str, str]] = {}
    for item in args.tree_env:
        label, _, assignment = item.partition(":")
        tree_env.setdefault(label, {})[assignment.partition("=")[0]] = assignment.partition("=")[2]
    results = []
    with TestNetwork() as net, tempfile.TemporaryDirectory(prefix="reel-bench-") as tmp:
        janus = Janus(net, Path(tmp) / "janus")
        janus.start()
        store = None
        if args.store == "s3":
            store = MinioServer(Path(tmp) / "minio", binary=minio_binary(build=True), host=net.host_addr)
            store.start()
        try:
            room = 7000
            for n in (int(x) for x in args.counts.split(",")):
                for label, tree in trees:
                    for fmt in formats:
                        for ingest in args.ingest.split(","):
                            room += 1
                            r = run_one(net, janus, n, args.window, Path(tmp), store, label=label, tree=tree,
                                        room=room, env=tree_env.get(label, {}), segment_format=fmt, ingest=ingest,
                                        cheap=args.publishers == "ffmpeg")
                            results.append({**r, "store": args.store})
                            print(json.dumps(results[-1]), flush=True)
        finally:
            janus.stop()
            if store is not None:
                store.stop()
    print(f"\nstore: {args.store}; CPU: user+sys seconds per wall second over the window, % of one vCPU")
    print("\ntree | format | participants | recorder % | per participant | Janus /p | publishers /p | machine busy % |"
          " RSS MiB | PSS MiB")
    for r in results:
        print(f"{r['tree']} | {r['format']} | {r['participants']} | {r['cpu_percent_of_one_vcpu']} | "
              f"{r['cpu_percent_per_participant']} | {r['janus_percent_per_participant']} | "
              f"{r['publishers_percent_per_participant']} | {r['machine_busy_percent']} | {r['rss_mib']} | "
              f"{r['pss_mib']}")


if __name__ == "__main__":
    main()
