#!/usr/bin/env python3
"""`make demo`: Reel doing its job on a local kind cluster, start to finish.

Installs the chart (operator from the image built here), a Janus room server, a MinIO store and two synthetic
WebRTC participants, applies a RecordingSession, records 30 s, stops it, and prints what was recorded, where,
and how to play it (the recording is also copied to ./demo-output/). The cluster stays up for a look around:
`kubectl get recs -n reel-demo`; `make cluster-down` removes everything.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.kit import Kit, download, list_objects, manifest_of, session_spec, wait_for  # noqa: E402
from tests.support.analyze import decode_segments, parse_playlist  # noqa: E402

from reel_api.vocabulary import TERMINAL_PHASES, Phase  # noqa: E402

NS = "reel-demo"
ROOM = 1234


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30, help="how long to record (default 30)")
    ap.add_argument("--output", default=str(REPO / "demo-output"), help="where to copy the recording")
    args = ap.parse_args()
    kit = Kit()
    t0 = time.monotonic()

    say(f"namespace {NS}: fresh")
    kit.helm_uninstall("reel", NS)
    kit.delete_namespace(NS)
    kit.kubectl("create", "namespace", NS)
    wait_for(lambda: kit.kubectl("get", "sa", "default", "-n", NS, check=False).returncode == 0, 60, "namespace")
    say("helm install reel ./charts/reel (operator from localhost/reel-operator:dev)")
    kit.helm_install("reel", NS)
    say(f"Janus room server with room {ROOM}, MinIO with bucket 'recordings'")
    server, endpoint = kit.deploy_room_and_store(NS, [ROOM])

    say("two participants join (aiortc: synthetic 640x480 video + tone)")
    pubs = [kit.start_publisher(NS, who, ROOM, args.seconds + 60) for who in ("alice", "bob")]
    for p in pubs:
        kit.wait_published(NS, p, timeout=180)

    spec = session_spec(server, ROOM, endpoint=endpoint)
    kit.create_session(NS, "demo", spec)
    say("kubectl apply RecordingSession 'demo'")
    wait_for(lambda: ((kit.session(NS, "demo") or {}).get("status") or {}).get("activeParticipants") == 2, 180,
             "both participants being recorded")
    print(kit.kubectl("get", "recs", "-n", NS).stdout, flush=True)
    say(f"recording for {args.seconds:.0f} s ...")
    time.sleep(args.seconds)
    say("stop: kubectl patch recs demo --type merge -p '{\"spec\":{\"stop\":true}}'")
    kit.stop_session(NS, "demo")
    obj = kit.wait_phase(NS, "demo", TERMINAL_PHASES, 400)
    print(kit.kubectl("get", "recs", "-n", NS).stdout, flush=True)
    status = obj["status"]
    if status["phase"] == Phase.FAILED:
        say(f"the recording failed: {status.get('message')}")
        print(kit.dump(NS))
        return 1

    out = Path(args.output)
    with kit.s3(NS) as s3:
        manifest = manifest_of(s3, "recordings", status["manifest"])
        objects = list_objects(s3, "recordings", manifest["prefix"])
        download(s3, "recordings", objects, out)
    say(f"recorded {len(objects)} objects into s3://recordings/{manifest['prefix']} (MinIO in namespace {NS}),"
        f" copied to {out}/")
    for p in manifest["participants"]:
        folder = out / Path(p["playlist"]).parent
        playlist = parse_playlist((out / p["playlist"]).read_text())
        decoded = decode_segments([folder / uri for uri, _, _ in playlist.entries])
        total = sum(d for _, d, _ in playlist.entries)
        size = sum(s["bytes"] for s in p["segments"])
        say(f"  {p['display']:<6} {len(p['segments'])} segments, {total:5.1f} s, {decoded.video_frames} frames "
            f"{sorted(decoded.sizes)}, {size / 1e6:.1f} MB  ->  {out / p['playlist']}")
    say(f"stop reason {status['stopReason']}, phase {status['phase']}, upload {status['upload']['progress']} %")
    say("play it: ffplay <playlist above>, VLC, or any HLS player (open the index.m3u8)")
    say(f"look around: kubectl -n {NS} get recs,pods; the manifest: {out / status['manifest']}")
    say(f"done in {time.monotonic() - t0:.0f} s. Clean up: make cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
