"""Benchmark: a recorder pod's memory on the kind cluster, as the kubelet sees it (not a test; prints measurements).

For each participant count (default 2 and 6) and each recorder image: N publisher pods (aiortc, 640x480 H.264 +
Opus) in a Janus room on the cluster, a RecordingSession of that room uploading to a MinIO on the cluster (the
default output: TS + AAC, forward ingest), then over a steady window the recorder container's memory, sampled
every few seconds:

- the kubelet's own numbers (``/api/v1/nodes/NODE/proxy/stats/summary``: the container's and the pod's
  ``workingSetBytes``, ``usageBytes``, ``rssBytes``): what evictions and ``kubectl top`` go by;
- the container's cgroup (read inside it: cgroup v1 ``memory.usage_in_bytes`` + ``memory.stat``, or v2
  ``memory.current`` + ``memory.stat``): usage, the working set as the kubelet computes it (usage minus
  ``inactive_file``), anonymous memory (``rss``/``anon``), page cache (``cache``/``file``) and what of it is
  mapped (the shared libraries' pages: charged to the cgroup that first read them, so the first recorder pod on a
  node carries FFmpeg's and Python's pages, later ones on the same node may not);
- the recorder process itself (``/proc/1/smaps_rollup``: RSS, PSS, anonymous; ``/proc/1/status``: threads).

Each figure is the largest of the window's samples (and the last one, for the working set). ``--warm-up`` first runs
each image once in a pod that imports what a recorder pod imports, so each is measured as a node's second recorder
pod: the first one of an image on a node is charged for the image's file pages it is the first to read (11-60 MiB
more, varying with the node's page cache), which is not the recorder's doing. ``--raw DIR`` keeps each run's last
sample whole, the process's memory per mapped file and its largest anonymous mappings.

    REEL_CLUSTER=h3 python3 benchmarks/recorder_memory.py [--counts 2,6] [--window 30]
        [--image LABEL=IMAGE ...] [--no-build] [--kubeconfig PATH] [--json FILE] [--raw DIR] [--warm-up]

``--image`` (repeatable; default ``current`` = ``$RECORDER_IMAGE`` or ``localhost/reel-recorder:dev``): the
recorder images take turns at each count (the chart upgraded between them). Images other than the default one
are built and loaded beforehand, e.g. for a before/after:

    git worktree add /tmp/reel-before HEAD
    REEL_CLUSTER=h3 RECORDER_IMAGE=localhost/reel-recorder:before /tmp/reel-before/tests/images/build.sh recorder
    REEL_CLUSTER=h3 python3 benchmarks/recorder_memory.py --image before=localhost/reel-recorder:before \\
        --image after=localhost/reel-recorder:dev

The operator, the chart and the CRDs are this checkout's (the CRDs applied from ``crds/``): run the script from the
checkout whose operator image is loaded (``$OPERATOR_IMAGE``), or the operator may refuse the CRD's fields.

Needs the kind cluster of ``make cluster-up`` (``REEL_CLUSTER=NAME`` for a private one: its kubeconfig is then
``~/.cache/reel/kubeconfig-NAME``) and the images of ``tests/images/build.sh`` (built and loaded unless
``--no-build``: operator, recorder, janus, publisher, minio). Everything it creates is in one namespace, deleted
at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROOMS = list(range(1101, 1121))
SAMPLE_EVERY = 5.0
CGROUP_READ = (  # cgroup v1 or v2, then the process: one exec, sections split by a marker line
    "cd /sys/fs/cgroup; if [ -f memory/memory.usage_in_bytes ]; then echo v1; cat memory/memory.usage_in_bytes;"
    " cat memory/memory.stat; else echo v2; cat memory.current; cat memory.stat; fi;"
    " echo @@; cat /proc/1/smaps_rollup; echo @@; cat /proc/1/status")
#: --warm-up: what a recorder pod imports (its first stage: the session validated with reel_api's pydantic models;
#: then the recorder, the forward ingest, an S3 store, the pod's status and metrics)
WARM_UP = ("import reel_api.loader, reel_recorder.cli, reel_recorder.ingest.forward, reel_recorder.k8s_status, "
           "reel_recorder.metrics; "
           "from reel_recorder.storage import S3Store; S3Store('b', endpoint_url='http://127.0.0.1:9', credentials="
           "{'AWS_ACCESS_KEY_ID': 'a', 'AWS_SECRET_ACCESS_KEY': 'b'})")
RAW_READ = "cat /proc/1/smaps; echo @@; ls -la /var/spool/reel; du -sk /var/spool/reel"  # --raw: at the window's end


def kubeconfig(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    cache = Path(os.environ.get("REEL_CACHE") or Path.home() / ".cache" / "reel")
    if os.environ.get("KUBECONFIG"):
        return Path(os.environ["KUBECONFIG"])
    cluster = os.environ.get("REEL_CLUSTER")
    return cache / (f"kubeconfig-{cluster}" if cluster and cluster != "reel" else "kubeconfig")


def parse_cgroup(text: str) -> dict:
    """MiB figures from the exec's output (CGROUP_READ)."""
    cgroup, rollup, status = text.split("@@\n")
    lines = cgroup.split("\n")
    version, usage = lines[0].strip(), int(lines[1])
    stat = {k: int(v) for k, v in (line.split() for line in lines[2:] if line.strip())}
    mib = 1 << 20
    if version == "v1":
        inactive, anon = stat.get("total_inactive_file", 0), stat.get("total_rss", 0)
        cache, mapped = stat.get("total_cache", 0), stat.get("total_mapped_file", 0)
        active = stat.get("total_active_file", 0)
    else:
        inactive, anon = stat.get("inactive_file", 0), stat.get("anon", 0)
        cache, mapped, active = stat.get("file", 0), stat.get("file_mapped", 0), stat.get("active_file", 0)
    roll = {}
    for line in rollup.splitlines()[1:]:
        key, _, rest = line.partition(":")
        if rest.strip():
            roll[key] = int(rest.split()[0]) * 1024
    threads = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:")), 0)
    return {"cgroup": version, "usage": usage / mib, "working_set": max(usage - inactive, 0) / mib,
            "anon": anon / mib, "file": cache / mib, "file_mapped": mapped / mib, "active_file": active / mib,
            "inactive_file": inactive / mib, "proc_rss": roll.get("Rss", 0) / mib, "proc_pss": roll.get("Pss", 0) / mib,
            "proc_anon": (roll.get("Pss_Anon", 0) or roll.get("Anonymous", 0)) / mib, "threads": threads}


def kubelet_summary(kit, node: str, ns: str, pod: str, container: str) -> dict:
    """The kubelet's numbers for the pod and its recorder container (MiB)."""
    r = kit.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/stats/summary", check=False)
    if r.returncode != 0:
        return {}
    mib = 1 << 20
    for p in json.loads(r.stdout).get("pods", []):
        if p["podRef"]["namespace"] == ns and p["podRef"]["name"] == pod:
            out = {"pod_working_set": p.get("memory", {}).get("workingSetBytes", 0) / mib}
            for c in p.get("containers", []):
                if c["name"] == container:
                    m = c.get("memory", {})
                    out.update(kubelet_working_set=m.get("workingSetBytes", 0) / mib,
                               kubelet_usage=m.get("usageBytes", 0) / mib, kubelet_rss=m.get("rssBytes", 0) / mib)
            return out
    return {}


def smaps_by_file(text: str) -> tuple[dict[str, dict[str, float]], list[tuple[float, float, str]]]:
    """``/proc/PID/smaps`` summed per mapped file (``[anon]`` for anonymous mappings, ``[heap]``, ``[stack]``...):
    Rss and Anonymous, MiB; and the anonymous mappings one by one (Rss, size MiB, address range), largest first."""
    out: dict[str, dict[str, float]] = {}
    anon: list[tuple[float, float, str]] = []
    name, where, size = "[anon]", "", 0.0
    for line in text.splitlines():
        head = line.split()
        if head and "-" in head[0] and ":" not in head[0]:
            name, where = (head[5] if len(head) > 5 else "[anon]"), head[0]
        elif head and head[0] == "Size:":
            size = int(head[1]) / 1024
        elif head and head[0] in ("Rss:", "Anonymous:"):
            entry = out.setdefault(name, {"Rss": 0.0, "Anonymous": 0.0})
            entry[head[0][:-1]] += int(head[1]) / 1024
            if head[0] == "Rss:" and name == "[anon]":
                anon.append((int(head[1]) / 1024, size, where))
    return out, sorted(anon, reverse=True)


def run_one(kit, ns: str, server: str, endpoint: str, n: int, room: int, label: str, image: str,
            window: float, raw_dir: Path | None = None) -> dict:
    from tests.e2e.kit import session_spec
    from tests.support.waiting import wait_for

    repo, tag = image.rsplit(":", 1)
    kit.helm_install("reel", ns, values={"recorder": {"image": {"repository": repo, "tag": tag,
                                                                "pullPolicy": "Never"},
                                                      "terminationGracePeriodSeconds": 120}})
    pubs = [kit.start_publisher(ns, f"{label}-{n}-{i}", room, window + 180) for i in range(n)]
    name = f"mem-{label}-{n}".lower()
    try:
        for p in pubs:
            kit.wait_published(ns, p, timeout=300)
        kit.create_session(ns, name, session_spec(server, room, endpoint=endpoint,
                                                  recording={"maxIdleSeconds": 120}))
        wait_for(lambda: ((kit.session(ns, name) or {}).get("status") or {}).get("activeParticipants") == n,
                 240, f"{name} recording {n} participants", interval=2)
        pod = kit.recorder_pods(ns, name)[0]
        pod_name, node = pod.metadata.name, pod.spec.node_name
        container = pod.spec.containers[0].name
        time.sleep(10)  # forwards set up, first segments cut and uploaded
        print(f"[bench] {label} n={n} pod {pod_name}: window of {window:.0f} s starts", file=sys.stderr, flush=True)
        samples, kubelet, r_last = [], [], None
        end = time.monotonic() + window
        while True:
            r = kit.kubectl("exec", "-n", ns, pod_name, "-c", container, "--", "sh", "-c", CGROUP_READ, check=False)
            if r.returncode == 0:
                samples.append(parse_cgroup(r.stdout))
                r_last = r.stdout
            k = kubelet_summary(kit, node, ns, pod_name, container)
            if k:
                kubelet.append(k)
            if time.monotonic() >= end:
                break
            time.sleep(SAMPLE_EVERY)
        if raw_dir:  # the last sample whole, the process's mappings per file and the spool
            r = kit.kubectl("exec", "-n", ns, pod_name, "-c", container, "--", "sh", "-c", RAW_READ, check=False)
            raw_dir.mkdir(parents=True, exist_ok=True)
            smaps, _, spool = r.stdout.partition("@@\n")
            files, anon = smaps_by_file(smaps)
            per_file = sorted(files.items(), key=lambda kv: -kv[1]["Rss"])
            (raw_dir / f"{label}-{n}.txt").write_text(
                (r_last or "") + "\n@@ spool\n" + spool + "\n@@ smaps per file (Rss, Anonymous MiB)\n"
                + "".join(f"{v['Rss']:8.2f} {v['Anonymous']:8.2f} {k}\n" for k, v in per_file)
                + "\n@@ anonymous mappings (Rss, Size MiB)\n"
                + "".join(f"{rss:8.2f} {size:8.2f} {where}\n" for rss, size, where in anon[:40]))
        status = (kit.session(ns, name) or {}).get("status") or {}
        kit.stop_session(ns, name)
        final = kit.wait_phase(ns, name, {"Completed", "BackedUp", "Failed"}, timeout=300)
    finally:
        for p in pubs:
            kit.kubectl("delete", "pod", "-n", ns, p, "--wait=false", check=False)
    if not samples:
        raise RuntimeError(f"{name}: no memory sample could be read")
    peak = {k: round(max(s[k] for s in samples), 1) for k in samples[0] if k != "cgroup"}
    out = {"image": label, "participants": n, "cgroup": samples[0]["cgroup"], "samples": len(samples),
           **{f"max_{k}": v for k, v in peak.items()},
           "last_working_set": round(samples[-1]["working_set"], 1),
           "phase": (final.get("status") or {}).get("phase"),
           "active_participants": status.get("activeParticipants")}
    if kubelet:
        out.update({f"kubelet_max_{k}": round(max(s.get(k, 0) for s in kubelet), 1) for k in kubelet[0]})
    return out


def warm_up(kit, ns: str, label: str, image: str) -> None:
    """A pod of ``image`` that imports what a recording imports, then is gone: the image's files are then in the
    node's page cache, charged to that pod, so the measured recorder pod is not the first to read them (a node's
    second recorder pod and later; the first one carries up to ~25-60 MiB more file pages, whichever image)."""
    name = f"warm-{label}".lower()
    kit.kubectl("run", name, "-n", ns, f"--image={image}", "--image-pull-policy=Never", "--restart=Never",
                "--command", "--", "python", "-c", WARM_UP)
    kit.kubectl("wait", "-n", ns, f"pod/{name}", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=180s",
                timeout=240)
    kit.kubectl("delete", "pod", "-n", ns, name, "--wait=true", check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="2,6")
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--image", action="append", default=[], metavar="LABEL=IMAGE")
    ap.add_argument("--no-build", action="store_true", help="the images are already built and loaded")
    ap.add_argument("--kubeconfig")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--warm-up", action="store_true", help="before measuring, run each image once in a pod that "
                    "imports what a recording imports (warm_up): every image measured as a node's second pod")
    ap.add_argument("--raw", type=Path, metavar="DIR", help="write each run's last sample whole (memory.stat, "
                    "smaps_rollup, status), the process's memory per mapped file and the spool's listing into DIR")
    args = ap.parse_args()
    os.environ["KUBECONFIG"] = str(kubeconfig(args.kubeconfig))
    from tests.e2e.kit import Kit

    kit = Kit()
    default = os.environ.get("RECORDER_IMAGE", "localhost/reel-recorder:dev")
    images = [(i.partition("=")[0], i.partition("=")[2]) for i in args.image] or [("current", default)]
    if not args.no_build:
        subprocess.run([str(REPO / "tests" / "images" / "build.sh"), "operator", "recorder", "janus", "publisher",
                        "minio"], env=kit.env, check=True)
    kit.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kit.kubectl("wait", "--for=condition=Established", "-f", str(REPO / "crds"), "--timeout=60s")
    ns = kit.create_namespace("reel-bench-mem")
    results = []
    try:
        kit.helm_install("reel", ns)
        server, endpoint = kit.deploy_room_and_store(ns, ROOMS)
        if args.warm_up:
            for label, image in images:
                warm_up(kit, ns, label, image)
        rooms = iter(ROOMS)
        for n in (int(x) for x in args.counts.split(",")):
            for label, image in images:
                r = run_one(kit, ns, server, endpoint, n, next(rooms), label, image, args.window, args.raw)
                results.append(r)
                print(json.dumps(r), flush=True)
    finally:
        kit.kubectl("delete", "recs", "--all", "-n", ns, "--timeout=120s", check=False)
        kit.helm_uninstall("reel", ns)
        kit.delete_namespace(ns, wait=False)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\nMiB; max over the window's samples; cgroup {results[0]['cgroup'] if results else '?'}")
    print("image | participants | kubelet WS (container / pod) | cgroup WS max / last | usage | anon | file "
          "(mapped / inactive) | process RSS / PSS / anon | threads")
    for r in results:
        print(f"{r['image']} | {r['participants']} | {r.get('kubelet_max_kubelet_working_set', '-')} / "
              f"{r.get('kubelet_max_pod_working_set', '-')} | {r['max_working_set']} / {r['last_working_set']} | "
              f"{r['max_usage']} | {r['max_anon']} | {r['max_file']} ({r['max_file_mapped']} / "
              f"{r['max_inactive_file']}) | {r['max_proc_rss']} / {r['max_proc_pss']} / {r['max_proc_anon']} | "
              f"{r['max_threads']}")


if __name__ == "__main__":
    main()
