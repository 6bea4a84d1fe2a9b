"""Benchmark: CPU and memory of the composite recording's media core (not a test; prints measurements).

N synthetic participants (default 4), each 640x480@30 H.264 (moving test pattern with camera-like noise,
~500 kb/s, constrained baseline, a keyframe every 2 s, as the room's publishers send) and a 20 ms Opus tone
of their own, are fed in real time to a ``CompositeEngine`` (recorder_image/reel_recorder/composite/), one
feeding thread per stream as the ingest has: the decoding runs on those threads, composing, mixing and
encoding on the engine's thread, for ``--seconds`` of media (default 20) per output size. The packets the
engine produces are counted, not written (muxing one TS stream is small next to this).

Each size runs in a child process of its own: its CPU time (user + sys, ``getrusage``) over the media window
and its peak RSS (VmHWM; the RSS after imports and loading the media is printed too). The feeding threads'
own work (sleeping, making packets) is measured with ``thread_time`` and reported, and subtracted in
"composite CPU". The media is encoded once, before the measurements, into a cache folder.

    python benchmarks/composite_cpu.py [--participants 4] [--seconds 20] [--sizes 640x480,1280x720]
                                       [--fps 15] [--preset veryfast]

The machines here have 2 vCPUs shared with whatever else runs: numbers from a busy machine are high.
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "recorder_image"))

IN_W, IN_H, IN_FPS = 640, 480, 30
TONES = [330.0, 440.0, 550.0, 660.0, 770.0, 880.0, 990.0, 1100.0]


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# -- media, made once ----------------------------------------------------------------------------------------
def make_media(path: Path, participants: int, seconds: float) -> None:
    import av
    from tests.harness.media import make_pattern_frames
    from tests.support.composite_media import tone_opus

    media = []
    for i in range(participants):
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = IN_W, IN_H, "yuv420p"
        enc.time_base, enc.framerate = Fraction(1, IN_FPS), Fraction(IN_FPS)
        enc.gop_size, enc.bit_rate = 2 * IN_FPS, 500_000
        enc.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline"}
        cycle = make_pattern_frames(IN_W, IN_H, IN_FPS * 2, seed=i + 1)
        video = []
        for n in range(round(seconds * IN_FPS)):
            frame = cycle[n % len(cycle)]
            frame.pts, frame.pict_type = n, av.video.frame.PictureType.NONE
            video += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(frame)]
        video += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(None)]
        audio = [bytes(p) for p in tone_opus(TONES[i % len(TONES)], seconds, 0.2)]
        media.append({"video": video, "audio": audio})
    path.write_bytes(pickle.dumps(media))


# -- one measured run (child process) ------------------------------------------------------------------------
def feed(tap, kind: str, items, clock, start: float, step: float, stats: dict) -> None:
    import av

    busy = 0.0
    for i, item in enumerate(items):
        t = start + i * step
        delay = t + 0.005 - clock.now()  # packets arrive a little after their media time
        if delay > 0:
            time.sleep(delay)
        data, key = item if kind == "video" else (item, False)
        packet = av.Packet(data)
        packet.is_keyframe = key
        before = time.thread_time()
        getattr(tap, kind)(packet, t)
        busy += time.thread_time() - before
    stats[kind] = stats.get(kind, 0.0) + busy
    stats["feeding"] = stats.get("feeding", 0.0) + time.thread_time() - busy


def child(args) -> None:
    from reel_recorder.clock import RecordingClock
    from reel_recorder.composite.config import CompositeConfig
    from reel_recorder.composite.engine import CompositeEngine

    media = pickle.loads(Path(args.media).read_bytes())[: args.participants]
    w, h = (int(v) for v in args.size.split("x"))
    rss_loaded = status_kib("VmRSS")
    out = {"video": 0, "audio": 0, "bytes": 0}

    def on_packet(kind, packet, t):
        out[kind] += 1
        out["bytes"] += packet.size

    clock = RecordingClock()
    bitrate = 800_000 if w * h <= 640 * 480 else 1_500_000
    engine = CompositeEngine(CompositeConfig(width=w, height=h, fps=args.fps, video_bitrate=bitrate,
                                             preset=args.preset), clock, on_packet)
    for i in range(len(media)):
        engine.add(f"p{i}", f"Participant {i + 1}", 0.0)
    engine.start()
    stats: dict = {}
    start = clock.now() + 0.2
    threads = []
    for i, m in enumerate(media):
        tap = engine.tap(f"p{i}")
        threads.append(threading.Thread(target=feed, args=(tap, "video", m["video"], clock, start, 1 / IN_FPS, stats)))
        threads.append(threading.Thread(target=feed, args=(tap, "audio", m["audio"], clock, start, 0.02, stats)))
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.close()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    wall = t1 - t0
    print(json.dumps({
        "size": args.size, "participants": len(media), "fps": args.fps, "preset": args.preset, "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2), "cpu_percent_of_one_vcpu": round(100 * cpu / wall, 1),
        "composite_cpu_percent": round(100 * (cpu - stats.get("feeding", 0.0)) / wall, 1),
        "decode_cpu_percent": round(100 * stats.get("video", 0.0) / wall, 1),
        "audio_in_cpu_percent": round(100 * stats.get("audio", 0.0) / wall, 1),
        "engine_thread_cpu_percent": round(100 * engine.cpu_seconds / wall, 1),
        "feeding_cpu_percent": round(100 * stats.get("feeding", 0.0) / wall, 1),
        "rss_loaded_mib": round(rss_loaded / 1024, 1), "peak_rss_mib": round(status_kib("VmHWM") / 1024, 1),
        "video_packets": out["video"], "audio_packets": out["audio"],
        "output_kbps": round(out["bytes"] * 8 / 1000 / max(engine.frames / args.fps, 1e-9)),
        **engine.stats(),
    }), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--participants", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "reel-composite-bench"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--media", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    media = cache / f"media-{args.participants}x{IN_W}x{IN_H}@{IN_FPS}-{args.seconds:g}s.pickle"
    if not media.exists():
        print(f"encoding {args.participants} x {args.seconds:g} s of {IN_W}x{IN_H}@{IN_FPS} input ...", flush=True)
        make_media(media, args.participants, args.seconds)
    results = []
    for size in args.sizes.split(","):
        proc = subprocess.run([sys.executable, __file__, "--child", "--media", str(media), "--size", size,
                               "--participants", str(args.participants), "--fps", str(args.fps),
                               "--preset", args.preset], capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print(f"\n{args.participants} participants, {IN_W}x{IN_H}@{IN_FPS} H.264 + Opus in, {args.seconds:g} s, "
          f"x264 {args.preset}")
    print("output      | process CPU (% of one vCPU) | composite | decode | engine thread | dropped | peak RSS MiB")
    for r in results:
        name = f"{r['size']}@{r['fps']}"
        print(f"{name:<11} | {r['cpu_percent_of_one_vcpu']:>26} | {r['composite_cpu_percent']:>9} "
              f"| {r['decode_cpu_percent']:>6} | {r['engine_thread_cpu_percent']:>13} | {r['droppedFrames']:>7} "
              f"| {r['peak_rss_mib']:>12}")


if __name__ == "__main__":
    main()
