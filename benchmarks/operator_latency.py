"""Operator latencies on the kind cluster: apply -> recorder pod created, and stop -> recorder pod gone.

    python benchmarks/operator_latency.py [--runs 5] [--kubeconfig ~/.cache/reel/kubeconfig]

Needs `make cluster-up` (and builds/loads the recorder and Janus images with tests/images/build.sh). Runs the
operator in this process (kopf's KopfRunner, as the cluster tests do), deploys Janus as a pod, then for each
run: creates a RecordingSession of an empty room, waits for phase Recording, sets spec.stop and waits until the
pod is deleted. Times come from a pod watch (ADDED / DELETED events as this process receives them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "recorder_image")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--kubeconfig", default=str(Path(os.environ.get("REEL_CACHE", Path.home() / ".cache/reel"))
                                               / "kubeconfig"))
    p.add_argument("--no-build", action="store_true", help="the images are already loaded")
    args = p.parse_args()
    os.environ["KUBECONFIG"] = args.kubeconfig

    from kubernetes import config
    from tests.cluster import test_operator as t
    from tests.cluster.conftest import Kube

    from reel_api.vocabulary import Phase

    kube = Kube(api=config.new_client_from_config(config_file=args.kubeconfig), kubeconfig=Path(args.kubeconfig))
    if not args.no_build:
        t.build_images("recorder", "janus")
    t.apply_crd(kube)
    ns = t.create_namespace(kube)
    created, gone, recording = [], [], []
    try:
        server = t.deploy_janus(kube, ns, rooms=range(2000, 2000 + args.runs))
        t.room_secret(kube, ns)
        with t.operator():
            times = t.PodTimes(kube, ns)
            for i in range(args.runs):
                name, pod = f"bench-{i}", f"reel-rec-bench-{i}"
                t0 = time.monotonic()
                t.create_session(kube, ns, t.session_body(name, server, 2000 + i))
                t.wait_for(lambda pod=pod: pod in times.created, 60, "pod created", 0.01)
                created.append(times.created[pod] - t0)
                t.wait_phase(kube, ns, name, Phase.RECORDING, 120)
                recording.append(time.monotonic() - t0)
                t1 = time.monotonic()
                t.stop_session(kube, ns, name)
                t.wait_for(lambda pod=pod: pod in times.gone, 120, "pod gone", 0.01)
                gone.append(times.gone[pod] - t1)
                t.wait_phase(kube, ns, name, (Phase.COMPLETED, Phase.BACKED_UP), 60)
                print(f"run {i}: apply->pod created {created[-1]:.3f} s, apply->Recording {recording[-1]:.2f} s, "
                      f"stop->pod gone {gone[-1]:.3f} s", flush=True)
            times.close()
    finally:
        t.delete_namespace(kube, ns)

    def show(label, xs):
        print(f"{label:28s} median {statistics.median(xs):.3f} s  min {min(xs):.3f}  max {max(xs):.3f}  (n={len(xs)})")
    show("apply -> pod created", created)
    show("apply -> phase Recording", recording)
    show("stop -> pod gone", gone)
    return 0


if __name__ == "__main__":
    sys.exit(main())
