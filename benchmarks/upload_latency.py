"""Upload latency of recorded segments against a local MinIO (not a timed test; prints numbers).

Measures, with the real Uploader + S3Store and a MinIO server started here:
- segment upload latency: from ``segment_closed()`` to the object stored (median, p99, max);
- stop to last object: from ``close()`` to the last object (final playlists, manifest) stored, and until
  ``close()`` returns;
- the CPU the upload work costs the recorder process (user+sys per segment and per recorded second).

Segments are synthetic (random bytes of the size a 4 s segment of ~500 kb/s H.264 + 128 kb/s AAC has).
By default segments are closed faster than real time (``--interval``) to get many samples quickly.

    python benchmarks/upload_latency.py [--participants 4] [--segments 400] [--interval 0.05]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "recorder_image"))

from tests.harness.minio import MinioServer  # noqa: E402
from tests.support.synthetic import SyntheticRecording  # noqa: E402

from reel_recorder.storage import S3Store, Uploader  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(minio: MinioServer, participants: int, segments: int, interval: float, segment_bytes: int,
        workers: int, tmp: Path) -> dict:
    bucket = minio.create_bucket(f"bench-{participants}-{int(time.time() * 1000) % 10**9}")
    store = S3Store(bucket, endpoint_url=minio.endpoint, credentials=minio.credentials)
    up = Uploader(store, workers=workers, manifest_interval=30.0).start()
    names = tuple(f"p{i}" for i in range(participants))
    rec = SyntheticRecording(tmp / f"spool-{participants}", prefix=f"bench/{participants}/", participants=names,
                             segment_bytes=segment_bytes)
    # write the spool files first (the recorder's work, not measured), then close them at the given pace
    files = []
    for i in range(segments):
        files.append(rec.write_segment(names[i % participants]))
    cpu0 = cpu()
    t0 = time.monotonic()
    next_at = t0
    for seg in files:
        next_at += interval
        rec.announce(up, seg)  # the recorder's catalog: segment, playlist and manifest to the uploader
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing of the synthetic recorder, not a wait for a condition
    rec.end(up)
    t_close = time.monotonic()
    result = up.close(timeout=120)
    t_closed = time.monotonic()
    cpu_used = cpu() - cpu0
    assert result.status == "uploaded", result.message
    lat = list(up.latencies.values())
    assert len(lat) == segments
    recorded_seconds = segments * rec.segment_seconds
    return {
        "participants": participants,
        "segments": segments,
        "segment_kib": segment_bytes / 1024,
        "closes_per_s": 1 / interval if interval else float("inf"),
        "median_ms": statistics.median(lat) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "max_ms": max(lat) * 1000,
        "stop_to_last_object_ms": (up.last_object_stored_at - t_close) * 1000,
        "close_returns_ms": (t_closed - t_close) * 1000,
        "cpu_ms_per_segment": cpu_used / segments * 1000,
        "cpu_pct_per_participant_realtime": cpu_used / recorded_seconds * participants * 100,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--participants", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--segments", type=int, default=400, help="segments per run")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between segment closes")
    ap.add_argument("--segment-bytes", type=int, default=(500_000 + 128_000) // 8 * 4,
                    help="default: 4 s of 500 kb/s video + 128 kb/s audio")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="reel-bench-") as d:
        tmp = Path(d)
        with MinioServer(tmp / "minio") as minio:
            # warm up (connections, MinIO's first writes)
            run(minio, 1, 10, 0.0, args.segment_bytes, args.workers, tmp)
            rows = [run(minio, n, args.segments, args.interval, args.segment_bytes, args.workers, tmp)
                    for n in args.participants]
    print(f"MinIO on 127.0.0.1, {args.workers} upload workers, segment {rows[0]['segment_kib']:.0f} KiB, "
          f"{rows[0]['closes_per_s']:.0f} segment closes/s (real time is participants/4 per s)")
    head = ("participants", "segments", "median ms", "p99 ms", "max ms", "stop→last obj ms", "close() ms",
            "CPU ms/seg")
    print(" | ".join(head))
    for r in rows:
        print(f"{r['participants']:>12} | {r['segments']:>8} | {r['median_ms']:>9.1f} | {r['p99_ms']:>6.1f} | "
              f"{r['max_ms']:>6.1f} | {r['stop_to_last_object_ms']:>16.1f} | {r['close_returns_ms']:>10.1f} | "
              f"{r['cpu_ms_per_segment']:>10.2f}")
    r = rows[0]
    print(f"upload CPU at real time: {r['cpu_ms_per_segment'] / 4 / 10:.2f} % of one core per participant "
          "(one segment per 4 s)")


if __name__ == "__main__":
    main()
