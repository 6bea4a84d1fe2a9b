"""Benchmark: the four ways to record one room, side by side (not a test; prints measurements).

    sudo python benchmarks/ingest_formats.py [--counts 1,4,8] [--window 20]
        [--ways forward+ts,forward+fmp4,webrtc+ts,webrtc+fmp4] [--tree before=/tmp/reel-before --tree after=.]
        [--publishers aiortc|ffmpeg]

For each count N: a private Janus in a network namespace, one room, N aiortc publishers (640x480@30 H.264 near
the room's 500 kb/s cap + Opus), and one ``reel-recorder`` per way, all recording the same publishers at the same
time: forward ingest (Janus RTP forwarding, the admin key given) or WebRTC ingest (the recorder subscribes like a
participant; no room credentials at all), into TS (Opus re-encoded as AAC) or fMP4 (Opus kept as sent). Over one
steady window the CPU time (user + sys from /proc) of each recorder is sampled, so the four numbers share the same
publishers, the same Janus and the same moment of the machine; Janus's and the publishers' CPU are reported
apart (Janus serves every recorder at once: its share is for all four ways together). Memory: each recorder's
RSS and PSS at the end of the window.

``--tree LABEL=DIR`` (repeatable) runs each way once per tree (DIR holds ``recorder_image/`` and ``operator/``,
e.g. ``git archive HEAD recorder_image operator | tar -x -C DIR``), all at the same time: two versions of the
recorder measured on the same publishers in the same window of the machine.

``--publishers ffmpeg``: cheap publishers, for counts the aiortc ones cannot reach on a small machine (8 of them
take most of 2 vCPUs): a clip encoded once (640x480@30 H.264 baseline ~500 kb/s, a keyframe every 2 s with its
SPS/PPS in band, and Opus), looped by the ``ffmpeg`` program with ``-c copy`` into a Janus *remote publisher*
(``add_remote_publisher``, as tests/support/remote_publisher.py does; SSRC 1000 video, 1010 audio). They answer no
keyframe request (a recorder starts at the next of the clip's keyframes) and cost ~1 % of a vCPU each.

Recorders run as in the image (botocore's data trimmed: recorder_cpu.image_like_env) and write
to a local folder. Needs root (network namespaces) and Debian's janus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.cheap_publishers import CheapPublisher, make_clip  # noqa: E402
from benchmarks.recorder_cpu import cpu_seconds, image_like_env, machine_busy, rollup_kib  # noqa: E402
from tests.harness.janus import Janus  # noqa: E402
from tests.harness.netns import TestNetwork  # noqa: E402
from tests.harness.procs import PublisherProcess, publisher_argv  # noqa: E402
from tests.support.recorder_proc import RecorderRun, session_manifest  # noqa: E402

WAYS = ("forward+ts", "forward+fmp4", "webrtc+ts", "webrtc+fmp4")


def start_recorder(net: TestNetwork, janus: Janus, room: int, way: str, workdir: Path,
                   tree: tuple[str, Path] | None = None) -> RecorderRun:
    """One recorder of ``way`` ("ingest+format"), from ``tree`` (label, directory; None: this one); WebRTC recorders
    get no credentials (what the ingest is for)."""
    ingest, _, fmt = way.partition("+")
    label = f"{way}@{tree[0]}" if tree else way
    recording = {"ingest": ingest, "segmentFormat": fmt, "segmentSeconds": 4, "maxIdleSeconds": 60}
    if fmt == "fmp4":
        recording["audioCodec"] = "opus"
    env = image_like_env(workdir, tree[1] if tree else REPO)
    if ingest == "forward":
        env["REEL_ROOM_ADMIN_KEY"] = janus.admin_key
    name = label.replace("+", "-").replace("@", "-")
    manifest = session_manifest(janus.ws_url, room, name=name, recording=recording, display=f"reel-{label}")
    return RecorderRun(net.popen, manifest, workdir / f"{name}-{room}", env=env)


def run_count(net: TestNetwork, janus: Janus, n: int, window: float, workdir: Path, ways: list[str],
              room: int, trees: list[tuple[str, Path]] | None = None, cheap: bool = False) -> list[dict]:
    labelled = [(f"{w}@{t[0]}", w, t) for w in ways for t in trees] if trees else [(w, w, None) for w in ways]
    janus.create_room(room, videocodec="h264", audiocodec="opus", fir_freq=2, publishers=n + 16 + len(labelled),
                      bitrate=500000)
    recs = {label: start_recorder(net, janus, room, way, workdir, tree) for label, way, tree in labelled}
    pubs: list[PublisherProcess] = []
    try:
        for rec in recs.values():
            rec.wait_event("joined", timeout=60)
        if cheap:
            clip = make_clip(workdir)
            pubs = [CheapPublisher(net, janus, room, clip, f"p{i}", workdir / f"pub-{room}-{i}.log")
                    for i in range(n)]
        else:
            pubs = [PublisherProcess(net, publisher_argv(janus.ws_url, room, display=f"p{i}", duration=window + 60),
                                     workdir / f"pub-{room}-{i}.log", f"p{i}") for i in range(n)]
            for p in pubs:
                p.wait_event("published", timeout=90)
        for rec in recs.values():
            rec.wait_event("participants", timeout=60,
                           predicate=lambda e: e["status"]["activeParticipants"] == n)
        time.sleep(4)  # every ingest set up, first keyframes in
        print(f"[bench] n={n}: window of {window:.0f} s starts", file=sys.stderr, flush=True)
        pids = {way: rec.proc.pid for way, rec in recs.items()}
        pub_pids = [p.proc.pid for p in pubs]

        def sample():
            return ({way: cpu_seconds(pid) for way, pid in pids.items()}, cpu_seconds(janus.proc.pid),
                    sum(cpu_seconds(q) for q in pub_pids), machine_busy(), time.monotonic())

        r0, j0, p0, (b0, a0), t0 = sample()
        time.sleep(window)
        r1, j1, p1, (b1, a1), t1 = sample()
        mems = {way: rollup_kib(pid) for way, pid in pids.items()}
        statuses = {}
        for rec in recs.values():
            rec.terminate()
        for way, rec in recs.items():
            statuses[way] = rec.wait(120)
    finally:
        for p in pubs:
            p.kill()
        for rec in recs.values():
            rec.kill()
        with contextlib.suppress(Exception):
            janus.destroy_room(room)
    wall = t1 - t0
    out = []
    for way in recs:
        share = (r1[way] - r0[way]) / wall * 100
        status = statuses[way]
        out.append({"way": way, "participants": n, "cpu_percent_of_one_vcpu": round(share, 2),
                    "cpu_percent_per_participant": round(share / n, 2),
                    "participants_per_vcpu": round(100 / (share / n), 1) if share > 0 else None,
                    "janus_percent_per_participant_all_ways": round((j1 - j0) / wall * 100 / n, 2),
                    "publishers_percent_per_participant": round((p1 - p0) / wall * 100 / n, 2),
                    "machine_busy_percent": round((b1 - b0) / max(a1 - a0, 1) * 100, 1),
                    "rss_mib": round(mems[way]["Rss"] / 1024, 1), "pss_mib": round(mems[way]["Pss"] / 1024, 1),
                    "segments": status["upload"]["segments"], "phase": status["phase"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,4,8")
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {', '.join(WAYS)}")
    ap.add_argument("--publishers", choices=["aiortc", "ffmpeg"], default="aiortc",
                    help="ffmpeg: cheap publishers (a pre-encoded clip looped into Janus remote publishers)")
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR",
                    help="run each way from DIR too (repeatable: every tree records at the same time)")
    args = ap.parse_args()
    trees = [(t.partition("=")[0], Path(t.partition("=")[2]).resolve()) for t in args.tree] or None
    ways = args.ways.split(",")
    unknown = sorted(set(ways) - set(WAYS))
    if unknown:
        ap.error(f"unknown ways: {unknown}")
    results = []
    with TestNetwork() as net, tempfile.TemporaryDirectory(prefix="reel-bench-ways-") as tmp:
        janus = Janus(net, Path(tmp) / "janus")
        janus.start()
        try:
            for i, n in enumerate(int(x) for x in args.counts.split(",")):
                for r in run_count(net, janus, n, args.window, Path(tmp), ways, room=7100 + i, trees=trees,
                                   cheap=args.publishers == "ffmpeg"):
                    results.append(r)
                    print(json.dumps(r), flush=True)
        finally:
            janus.stop()
    print("\nCPU: user+sys seconds per wall second over the same window, % of one vCPU; Janus serves all ways at once")
    print("\nway | participants | recorder % | per participant | participants per vCPU | Janus /p (all ways) |"
          " publishers /p | machine busy % | RSS MiB | PSS MiB | segments | phase")
    for r in results:
        print(f"{r['way']} | {r['participants']} | {r['cpu_percent_of_one_vcpu']} | "
              f"{r['cpu_percent_per_participant']} | {r['participants_per_vcpu']} | "
              f"{r['janus_percent_per_participant_all_ways']} | {r['publishers_percent_per_participant']} | "
              f"{r['machine_busy_percent']} | {r['rss_mib']} | {r['pss_mib']} | {r['segments']} | {r['phase']}")


if __name__ == "__main__":
    main()
