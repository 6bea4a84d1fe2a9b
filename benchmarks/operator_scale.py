"""The operator at scale on the kind cluster: 1,000 RecordingSessions (and a burst of 300) whose recorder pods land
on a kwok fake node, so the machine is not the limit and the operator is what is measured.

    make bench-scale                       # builds kwok (hack/kind/build.sh kwok), then this with defaults
    python benchmarks/operator_scale.py [--runs scale,burst] [--sessions 1000] [--rate 20] [--burst 300]
        [--hold 30] [--kubeconfig PATH] [--tree LABEL=DIR ...] [--json OUT]

Setup (undone at the end): the CRD from crds/; a Node ``reel-kwok-0`` labelled ``type=kwok`` and tainted
``kwok.x-k8s.io/node=fake:NoSchedule``; ``kwok`` ($REEL_CACHE/bin/kwok) managing only nodes with that label, with
the stages of benchmarks/kwok/stages.yaml (the node Ready; its pods Running at once; a pod being deleted
removed at once); ``reel-operator`` as its own process (benchmarks/counted_operator.py: counts every API request
it sends) watching the namespaces ``reel-scale-*``, standalone, recorder pods given the node selector
``type=kwok`` and the toleration of that taint (REEL_RECORDER_NODE_SELECTOR / REEL_RECORDER_TOLERATIONS).

Runs, each in a fresh namespace:
- ``scale``: ``--sessions`` sessions (each its own room) created at ``--rate`` per second, held for ``--hold``
  seconds with all of them live (the steady cost of 1,000 sessions), then stopped (``spec.stop: true``) at the
  same rate;
- ``burst``: ``--burst`` sessions created back to back (one client, one request after the other, as
  ``kubectl apply`` of a file does), then all stopped back to back.

Measured (times from watches in this process: the pod's ADDED and DELETED events as received here):
apply -> recorder pod created and stop -> pod gone (p50/p99/max; "apply" = just before the create request,
"stop" = just before the patch); the operator's RSS (peak, /proc VmHWM, and at the end of the hold) and CPU
(user+sys from /proc, per stage); the API requests the operator sent per session (by verb and resource); the
API server's own ``apiserver_request_total`` delta (all clients: this script, kwok, the scheduler; a
cross-check); and correctness: every session got exactly its pod, reached ``Completed`` after the stop, its pod
gone, no session ``Failed``, no Warning Event, no traceback or retry in the operator's log. A session stuck
(no pod within ``--timeout`` s, not final, pod not gone) is listed by name.

Where apply -> pod went (``apply_to_pod_breakdown``, printed after each operator process has ended): from the trace
counted_operator.py writes (kopf's finalizer patch, each create-handler run and each of its API calls, per
session, on the machine's monotonic clock) beside this process's apply and watch times: kopf's intake, its
finalizer patch, the way to the handler, the handler's calls by kind, the pod seen (``breakdown``). Where stop ->
pod gone went (``stop_to_gone_breakdown``): the way to the stop handler, its pod deletion, the pod seen gone
(``stop_breakdown``).

What "stop -> pod gone" means here: kwok stands in for the kubelet and removes a pod as soon as it is being
deleted, so it is the operator's reaction (read the stop, delete the pod gracefully) plus kwok's removal. With a
real recorder the pod goes only when the recorder has closed its segments and uploaded (seconds; see
operator_latency.py). Sessions stay ``Starting`` while held: no recorder runs to report ``Recording``.

``--tree LABEL=DIR`` (repeatable) runs the operator from another checkout (DIR holds ``operator/``, e.g.
``git archive HEAD operator | tar -x -C DIR``), one after the other on the same cluster: before/after numbers of
one run of the machine. Default: this checkout only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks")]

from counted_operator import GC_KEY  # noqa: E402
from scale_cluster import Cluster, KwokNode, Watches  # noqa: E402

CACHE = Path(os.environ.get("REEL_CACHE") or Path.home() / ".cache" / "reel")
NS_PREFIX = "reel-scale-"
GROUP, VERSION, PLURAL = "reel.dev", "v1alpha1", "recordingsessions"
ROOM_SERVER = "ws://10.96.0.250:8188"  # an address literal: no name to resolve (only the operator is measured)
FINAL = ("Completed", "Failed", "BackedUp")


def default_kubeconfig() -> Path:
    name = os.environ.get("REEL_CLUSTER", "reel")
    return CACHE / ("kubeconfig" if name == "reel" else f"kubeconfig-{name}")


def session_body(name: str, room: int) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RecordingSession", "metadata": {"name": name},
            "spec": {"room": {"server": ROOM_SERVER, "id": room},
                     "recording": {"maxIdleSeconds": 60, "segmentSeconds": 4},
                     "storage": {"local": {"path": "/recordings"}}}}


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list. Pure."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def summary(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50": round(statistics.median(xs), 3), "p99": round(percentile(xs, 99), 3),
            "max": round(max(xs), 3)}


# ---------------------------------------------------------------------------------------------------------
# The operator as its own process
# ---------------------------------------------------------------------------------------------------------


class OperatorProcess:
    """reel-operator (counted) from ``tree``; RSS and CPU from /proc, API requests from its counts file."""

    def __init__(self, tree: Path, kubeconfig: Path, workdir: Path, label: str):
        self.counts_file = workdir / f"counts-{label}.json"
        self.log_file = workdir / f"operator-{label}.log"
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": f"{tree / 'operator'}",
               "REEL_BENCH_COUNTS": str(self.counts_file), "REEL_LIVENESS_ENDPOINT": "",
               "REEL_RECORDER_NODE_SELECTOR": json.dumps({"type": "kwok"}),
               "REEL_RECORDER_TOLERATIONS": json.dumps([KwokNode.TOLERATION]),
               "REEL_RECORDER_IMAGE_PULL_POLICY": "Never", "REEL_LOG_LEVEL": "INFO",
               # kwok, not a kubelet, starts the pods: on a loaded machine that may lag by minutes, which is
               # no failure of the operator's to measure (it would end sessions StartTimeout after 180 s)
               "REEL_START_TIMEOUT_SECONDS": "900"}
        for k in ("REEL_NAMESPACES", "REEL_METRICS_PORT"):
            env.pop(k, None)
        self.log = open(self.log_file, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "counted_operator.py"), "--standalone",
             "--namespace", f"{NS_PREFIX}*"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.peak_rss = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _status(self) -> dict[str, int]:
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) * 1024
        return out

    def _sample(self):
        while not self._stop.wait(0.5):
            try:
                self.peak_rss = max(self.peak_rss, self._status().get("VmHWM", 0))
            except OSError:
                return

    def rss(self) -> int:
        return self._status().get("VmRSS", 0)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def counts(self) -> dict[str, int]:
        time.sleep(1.2)  # the process writes them every second
        try:
            return json.loads(self.counts_file.read_text())
        except (OSError, ValueError):
            return {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self._stop.set()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def log_size(self) -> int:
        self.log.flush()
        return self.log_file.stat().st_size

    def log_problems(self, start: int = 0, end: int | None = None) -> list[str]:
        """Lines of its log (bytes start..end) that a user would see as errors or retries (tracebacks, retries,
        errors)."""
        bad = []
        with open(self.log_file, "rb") as f:
            f.seek(start)
            text = f.read(None if end is None else max(0, end - start)).decode(errors="replace")
        for line in text.splitlines():
            low = line.lower()
            if any(w in low for w in ("traceback", "will retry", "temporaryerror", "[error", "error ", "exception")):
                bad.append(line[:300])
        return bad


def diff_counts(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Requests between two snapshots of cumulative counts, without zeros. Pure."""
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


# ---------------------------------------------------------------------------------------------------------
# One run: create, hold, stop
# ---------------------------------------------------------------------------------------------------------


def pace(i: int, t0: float, rate: float) -> None:
    if rate > 0:
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def run_once(cluster: Cluster, op: OperatorProcess, ns: str, kind: str, n: int, rate: float, hold: float,
             timeout: float) -> dict:
    watches = Watches(cluster, ns)
    names = [f"s{i:04d}" for i in range(n)]
    applied: dict[str, float] = {}
    stopped: dict[str, float] = {}
    result: dict = {"run": kind, "sessions": n, "rate": rate or "back to back"}
    try:
        counts0, cpu0, api0 = op.counts(), op.cpu_seconds(), cluster.apiserver_requests()
        log0 = op.log_size()
        t0 = time.monotonic()
        for i, name in enumerate(names):
            pace(i, t0, rate)
            applied[name] = time.monotonic()
            cluster.create_session(ns, session_body(name, 10000 + i))
        result["apply_seconds"] = round(time.monotonic() - t0, 2)
        result["_applied"] = {f"{ns}/{s}": applied[s] for s in names}
        waited = watches.wait(lambda: all(f"reel-rec-{s}" in watches.pod_added for s in names), timeout)
        cpu1 = op.cpu_seconds()
        result["create_cpu_seconds"] = round(cpu1 - cpu0, 2)
        created = [watches.pod_added[f"reel-rec-{s}"] - applied[s] for s in names
                   if f"reel-rec-{s}" in watches.pod_added]
        result["apply_to_pod"] = summary(created)
        result["_pod_added"] = {f"{ns}/{s}": watches.pod_added[f"reel-rec-{s}"] for s in names
                                if f"reel-rec-{s}" in watches.pod_added}
        result["no_pod"] = [s for s in names if f"reel-rec-{s}" not in watches.pod_added]
        # let the sessions settle (Starting, pods Running on the kwok node), then the steady cost of holding them
        watches.wait(lambda: all(watches.phase.get(s) == "Starting" for s in names), 60 if waited else 1)
        time.sleep(2)
        cpu_h0, t_h0 = op.cpu_seconds(), time.monotonic()
        time.sleep(hold)
        result["hold"] = {"seconds": hold, "cpu_share": round((op.cpu_seconds() - cpu_h0)
                                                             / (time.monotonic() - t_h0), 3),
                          "rss_mib": round(op.rss() / 2**20, 1)}
        counts1 = op.counts()
        cpu2 = op.cpu_seconds()
        t1 = time.monotonic()
        for i, name in enumerate(names):
            pace(i, t1, rate)
            stopped[name] = time.monotonic()
            cluster.stop_session(ns, name)
        watches.wait(lambda: all(f"reel-rec-{s}" in watches.pod_gone for s in names)
                     and all(watches.phase.get(s) in FINAL for s in names), timeout)
        result["stop_cpu_seconds"] = round(op.cpu_seconds() - cpu2, 2)
        gone = [watches.pod_gone[f"reel-rec-{s}"] - stopped[s] for s in names if f"reel-rec-{s}" in watches.pod_gone]
        result["stop_to_pod_gone"] = summary(gone)
        result["_stopped"] = {f"{ns}/{s}": stopped[s] for s in names}
        result["_pod_gone"] = {f"{ns}/{s}": watches.pod_gone[f"reel-rec-{s}"] for s in names
                               if f"reel-rec-{s}" in watches.pod_gone}
        counts2 = op.counts()
        api1 = cluster.apiserver_requests()
        result["operator_requests_per_session"] = {
            "create+hold": per_session(diff_counts(counts1, counts0), n),
            "stop": per_session(diff_counts(counts2, counts1), n)}
        result["apiserver_requests_per_session_all_clients"] = round(sum(diff_counts(api1, api0).values()) / n, 1)
        result["stuck"] = {
            "no_pod": result.pop("no_pod"),
            "pod_not_gone": [s for s in names if f"reel-rec-{s}" not in watches.pod_gone],
            "not_final": [s for s in names if watches.phase.get(s) not in FINAL]}
        result["phases"] = dict(sorted(count_values(watches.phase.get(s) for s in names).items()))
        result["warning_events"] = cluster.warning_events(ns)
        result["operator_rss_peak_mib"] = round(op.peak_rss / 2**20, 1)
        result["operator_log_problems"] = op.log_problems(log0, op.log_size())[:20]  # not the cleanup's
    finally:
        watches.close()
    return result


def breakdown(r: dict, trace: dict[str, list]) -> dict:
    """Where apply -> pod created went, from the operator's trace (counted_operator.py) and this process's times:
    ``intake`` apply -> kopf's first patch sent (the watch event, kopf's queue), ``finalizer`` that patch,
    ``to_handler`` its answer -> the first run of the create handler (or of ``create.start_early``) entered (with
    the finalizer from admission kopf sends no patch before the pod: ``intake`` is then apply -> that run entered,
    its wait for a thread included, and the other two 0), ``wait_for_thread`` that run handed to kopf's pool ->
    entered,
    ``apply_to_handler`` apply -> that run entered, ``handler`` that run entered -> the pod's create answered (each
    API call in between also summed by kind), ``seen`` that answer -> this process's watch saw the pod,
    ``pod_to_starting`` the pod's create answered -> the Starting write answered (the rest of the start), ``gc``
    the operator's garbage collections within apply -> pod seen (every thread waits while one runs). p50/p99 of
    each over all sessions, and their means over the slowest 1 % by apply -> pod. Pure."""
    rows = []
    collections = trace.get(GC_KEY) or []
    for key, t_apply in r.get("_applied", {}).items():
        t_pod, events = r.get("_pod_added", {}).get(key), trace.get(key) or []
        patches = [e for e in events if e[0] == "kopf-patch"]
        handlers = [e for e in events if e[0] == "handler"]
        pod = [e for e in events if e[0] == "kube create Pod"]
        if t_pod is None or not handlers or not pod:
            continue
        run = min((h for h in handlers if h[1] <= pod[0][2]), key=lambda h: h[1], default=handlers[0])
        calls: dict[str, float] = {}
        for what, a, b in events:
            if what.startswith("kube ") and run[1] <= a and b <= pod[0][2]:
                calls[what] = calls.get(what, 0.0) + b - a
        queued = [e for e in events if e[0] == "queued" and e[1] <= pod[0][2]]
        if queued:
            calls["wait_for_thread"] = queued[-1][2] - queued[-1][1]
        fin = patches[0] if patches and patches[0][1] < pod[0][2] else None  # none: the finalizer came at admission
        steps = {"intake": fin[1] - t_apply, "finalizer": fin[2] - fin[1], "to_handler": run[1] - fin[2]} if fin \
            else {"intake": run[1] - t_apply, "finalizer": 0.0, "to_handler": 0.0}
        starting = [e for e in events if e[0] == "kube patch_session_status" and e[1] >= pod[0][2]]
        if starting:
            calls["pod_to_starting"] = starting[0][2] - pod[0][2]
        calls["gc"] = sum(max(0.0, min(b, t_pod) - max(a, t_apply)) for _, a, b in collections)
        rows.append({"total": t_pod - t_apply, **steps, "handler": pod[0][2] - run[1], "seen": t_pod - pod[0][2],
                     "handler_runs": float(len(handlers)), "apply_to_handler": run[1] - t_apply, **calls})
    return _percentiles(rows)


def stop_breakdown(r: dict, trace: dict[str, list]) -> dict:
    """Where stop -> pod gone went, from the operator's trace (counted_operator.py) and this process's times:
    ``to_handler`` the stop patch sent -> the stop handler's first run entered (the watch event, kopf's queue and
    change detection, the wait for a thread), ``handler`` that run entered -> its pod deletion answered,
    ``delete`` that request alone, ``gone`` its answer -> this process's watch saw the pod deleted (kwok's removal
    and the watch), ``stop_runs`` runs of the stop handler. p50/p99 of each over all sessions, and their means over
    the slowest 1 % by stop -> gone. Pure."""
    rows = []
    for key, t_stop in r.get("_stopped", {}).items():
        t_gone, events = r.get("_pod_gone", {}).get(key), trace.get(key) or []
        runs = [e for e in events if e[0] == "stop-handler" and e[1] >= t_stop]
        deletes = [e for e in events if e[0] == "kube delete_pod" and e[1] >= t_stop]
        if t_gone is None or not runs or not deletes:
            continue
        run, delete = runs[0], deletes[0]
        rows.append({"total": t_gone - t_stop, "to_handler": run[1] - t_stop, "handler": delete[2] - run[1],
                     "delete": delete[2] - delete[1], "gone": t_gone - delete[2], "stop_runs": float(len(runs))})
    return _percentiles(rows)


def _percentiles(rows: list[dict]) -> dict:
    """p50, p99 and the mean of the slowest 1 % (by ``total``) of each key of ``rows``."""
    if not rows:
        return {}
    rows.sort(key=lambda x: x["total"])
    slow = rows[-max(1, len(rows) // 100):]
    keys = sorted({k for row in rows for k in row})
    return {"sessions": len(rows), **{k: {"p50": round(statistics.median([row.get(k, 0.0) for row in rows]), 3),
                                          "p99": round(percentile([row.get(k, 0.0) for row in rows], 99), 3),
                                          "slowest_1pct_mean": round(statistics.mean([row.get(k, 0.0) for row in slow]),
                                                                     3)} for k in keys}}


def per_session(counts: dict[str, int], n: int) -> dict:
    total = sum(counts.values())
    return {"total": round(total / n, 2), **{k: round(v / n, 2) for k, v in counts.items()}}


def count_values(values) -> dict:
    out: dict = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def show(label: str, r: dict) -> None:
    a, s = r["apply_to_pod"], r["stop_to_pod_gone"]
    stuck = sum(len(v) for v in r["stuck"].values())
    print(f"[{label}] {r['run']}: {r['sessions']} sessions ({r['rate']}/s; created in {r['apply_seconds']} s)\n"
          f"  apply -> pod created  p50 {a.get('p50')} s  p99 {a.get('p99')} s  max {a.get('max')} s\n"
          f"  stop  -> pod gone     p50 {s.get('p50')} s  p99 {s.get('p99')} s  max {s.get('max')} s\n"
          f"  operator: RSS peak {r['operator_rss_peak_mib']} MiB (held: {r['hold']['rss_mib']} MiB), CPU "
          f"{r['create_cpu_seconds']} s creating, {r['hold']['cpu_share'] * 100:.1f} % of a core holding, "
          f"{r['stop_cpu_seconds']} s stopping\n"
          f"  API requests per session (operator): create+hold "
          f"{r['operator_requests_per_session']['create+hold']['total']}, stop "
          f"{r['operator_requests_per_session']['stop']['total']}; apiserver, all clients: "
          f"{r['apiserver_requests_per_session_all_clients']}\n"
          f"  phases {r['phases']}, stuck {stuck}, Warning events {len(r['warning_events'])}, "
          f"operator log errors/retries {len(r['operator_log_problems'])}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="scale,burst", help="comma-separated: scale, burst")
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--rate", type=float, default=20.0, help="sessions created (and stopped) per second, scale run")
    p.add_argument("--burst", type=int, default=300)
    p.add_argument("--hold", type=float, default=30.0, help="seconds all sessions stay live (scale run)")
    p.add_argument("--timeout", type=float, default=600.0, help="longest wait for pods / final phases")
    p.add_argument("--kubeconfig", type=Path, default=Path(os.environ.get("KUBECONFIG") or default_kubeconfig()))
    p.add_argument("--tree", action="append", default=[], help="LABEL=DIR: run the operator from DIR/operator")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree] or [("this", REPO)]
    kwok_bin = CACHE / "bin" / "kwok"
    if not kwok_bin.exists():
        sys.exit(f"{kwok_bin} is missing: ./hack/kind/build.sh kwok (make bench-scale does it)")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"reel-bench-scale-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(args.kubeconfig)
    cluster.apply_crd(REPO / "crds" / "reel.dev_recordingsessions.yaml")
    results = []
    with KwokNode(cluster, kwok_bin, REPO / "benchmarks" / "kwok" / "stages.yaml", workdir):
        for label, tree in trees:
            op = OperatorProcess(tree, args.kubeconfig, workdir, label)
            try:
                with cluster.chart_admission(tree / "charts" / "reel", f"bench-{label}") as policies:
                    print(f"[{label}] chart admission policies applied: {policies or 'none'}", flush=True)
                    cluster.warm_up(op.alive, NS_PREFIX)
                    for kind in args.runs.split(","):
                        n, rate = (args.sessions, args.rate) if kind == "scale" else (args.burst, 0.0)
                        ns = cluster.create_namespace(f"{NS_PREFIX}{kind}-{uuid.uuid4().hex[:5]}")
                        try:
                            r = run_once(cluster, op, ns, kind, n, rate, args.hold if kind == "scale" else 5.0,
                                         args.timeout)
                            r["tree"] = label
                            r["admission_policies"] = policies
                            show(label, r)
                            results.append(r)
                            if args.json:
                                args.json.write_text(json.dumps(results, indent=2, default=str))
                        finally:
                            t0 = time.monotonic()
                            cluster.delete_namespace(ns)  # the operator releases the sessions (finalizers)
                            print(f"[{label}] {ns} deleted in {time.monotonic() - t0:.0f} s", flush=True)
            finally:
                op.stop()
            print(f"[{label}] operator log: {op.log_file}", flush=True)
            try:
                trace = json.loads(Path(f"{op.counts_file}.trace").read_text())
            except (OSError, ValueError):
                trace = {}
            for r in results:
                if r["tree"] == label and "_applied" in r:
                    r["apply_to_pod_breakdown"] = breakdown(r, trace)
                    r["stop_to_gone_breakdown"] = stop_breakdown(r, trace)
                    for k in ("_applied", "_pod_added", "_stopped", "_pod_gone"):
                        r.pop(k, None)
                    for what, key in (("apply -> pod", "apply_to_pod_breakdown"), ("stop -> gone",
                                                                                  "stop_to_gone_breakdown")):
                        print(f"[{label}] {r['run']}: where {what} went (s; p50 / p99 / mean of the slowest 1 %):",
                              flush=True)
                        for k, v in r[key].items():
                            if isinstance(v, dict):
                                print(f"    {k:32} {v['p50']:7.3f} {v['p99']:7.3f} "
                                      f"{v['slowest_1pct_mean']:7.3f}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
