"""``reel-operator`` with every Kubernetes API request it sends counted (for benchmarks/operator_scale.py).

    REEL_BENCH_COUNTS=/tmp/counts.json python benchmarks/counted_operator.py [reel-operator flags...]

Both HTTP clients of the operator are wrapped before it starts: the official ``kubernetes`` client (the
handlers' calls, ``reel_operator/kube.py``) and aiohttp (kopf's watches, patches and Events). Each request is
counted as ``"<VERB> <resource>[/<subresource>]"`` (verbs as the API server names them: get, list, watch,
create, patch, update, delete); the counts are written as JSON to ``$REEL_BENCH_COUNTS`` every second and at
exit. The reel_operator package is whichever is first on ``sys.path`` (PYTHONPATH selects a tree), so the
benchmark can count an older checkout the same way.

The way of each session to its pod is traced too (``$REEL_BENCH_COUNTS.trace``, JSON, written at exit):
``"namespace/name" -> [[what, t0, t1], ...]`` in ``time.monotonic()`` (one clock for every process of
the machine, so the benchmark can set it beside its own apply and watch times): kopf's first patch of the session
(``kopf-patch``: its finalizer), each start handed to a handler thread (``queued``: from ``main.to_pool`` to the
thread), each run of the create handler or of ``create.start_early`` (``handler``) and
each API call of the handler's kube client (``kube <method>``, also those it runs in its ``reel-io`` pool), e.g.
``kube create Pod``; and on the way of a stop to the pod's deletion each run of the stop handler (``stop-handler``,
``handlers/stop.stop``) with its calls (``kube delete_pod``).
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import functools
import json
import os
import re
import sys
import threading
from urllib.parse import urlsplit

COUNTS: collections.Counter[str] = collections.Counter()
_LOCK = threading.Lock()
TRACE: dict[str, list] = collections.defaultdict(list)
_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("reel_bench_session", default=None)
# the session whose start runs in this context (the copy of kopf's context its handler thread runs in)
_TRACED = re.compile(r"/namespaces/(?P<ns>[^/]+)/recordingsessions/(?P<name>[^/?]+)$")
# /api/v1/namespaces/NS/pods/NAME/status, /apis/G/V/namespaces/NS/R/NAME, /apis/G/V/R (cluster-wide)
_PATH = re.compile(r"^/apis?/(?:[^/]+/)?v[^/]+(?:/namespaces/[^/]+)?/(?P<res>[^/?]+)(?:/(?P<name>[^/?]+))?"
                   r"(?:/(?P<sub>[^/?]+))?")


def request_kind(method: str, url: str) -> str:
    """``"<verb> <resource>[/<subresource>]"`` of one API request. Pure."""
    parts = urlsplit(str(url))
    m = _PATH.match(parts.path)
    resource = "other"
    named = False
    if m:
        resource = m.group("res") + (f"/{m.group('sub')}" if m.group("sub") else "")
        named = bool(m.group("name"))
        if m.group("res") == "namespaces" and m.group("name") and not m.group("sub"):
            resource, named = "namespaces", True
    method = method.upper()
    if method == "GET":
        verb = "watch" if "watch=true" in parts.query or "watch=1" in parts.query else ("get" if named else "list")
    else:
        verb = {"POST": "create", "PUT": "update"}.get(method, method.lower())
    return f"{verb} {resource}"


def count(method: str, url: str) -> None:
    with _LOCK:
        COUNTS[request_kind(method, url)] += 1


def dump(path: str) -> None:
    with _LOCK:
        data = dict(COUNTS)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def trace(key: str | None, what: str, t0: float, t1: float) -> None:
    if key:
        with _LOCK:
            TRACE[key].append([what, round(t0, 4), round(t1, 4)])


def _session_of(args, kwargs) -> str | None:
    """namespace/session of a Kube method's call: the thread's create handler, else from the object created."""
    key = _CURRENT.get()
    if key:
        return key
    body = args[0] if args and isinstance(args[0], dict) else kwargs.get("body")
    if isinstance(body, dict):
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        if name.startswith("reel-rec-"):
            return f"{meta.get('namespace')}/{name[len('reel-rec-'):]}"
    return None


def install_trace() -> None:
    """Wrap the create handler and the Kube client's methods of the reel_operator package on sys.path."""
    import time

    from reel_operator import kube
    from reel_operator.handlers import create, stop

    def key_of(body) -> str:
        meta = body["metadata"]
        return f"{meta.get('namespace')}/{meta.get('name')}"

    def traced_handler(original, what="handler"):
        @functools.wraps(original)  # its name: to_pool below traces the wait for a thread of "start" runs
        def run(ctx, body, *args, **kwargs):
            token = _CURRENT.set(key_of(body))
            t0 = time.monotonic()
            try:
                return original(ctx, body, *args, **kwargs)
            finally:
                trace(_CURRENT.get(), what, t0, time.monotonic())
                _CURRENT.reset(token)
        return run

    create.start = traced_handler(create.start)
    if hasattr(create, "start_early"):  # a tree that starts a session on its first event (main.py)
        create.start_early = traced_handler(create.start_early)
    stop.stop = traced_handler(stop.stop, "stop-handler")  # main.py calls it as stop.stop: found at call time

    from reel_operator import main
    if hasattr(main, "to_pool"):  # a tree that hands its starts to kopf's pool through main.to_pool
        original_to_pool = main.to_pool

        def to_pool(memo, fn, *args, **kwargs):
            body = args[1] if len(args) > 1 and hasattr(args[1], "get") else None  # a dict, or kopf's Body
            if body is not None and getattr(fn, "__name__", "") in ("start", "start_early"):
                key, queued, inner = key_of(body), time.monotonic(), fn

                def fn(*a, **k):  # the same call, its wait for a thread traced
                    trace(key, "queued", queued, time.monotonic())
                    return inner(*a, **k)
            return original_to_pool(memo, fn, *args, **kwargs)
        main.to_pool = to_pool

    def wrap(name, method):
        def traced(self, *args, **kwargs):
            key = _session_of(args, kwargs)
            what = f"kube {name}" + (f" {args[0].get('kind')}" if args and isinstance(args[0], dict) else "")
            t0 = time.monotonic()
            try:
                return method(self, *args, **kwargs)
            finally:
                trace(key, what, t0, time.monotonic())
        return traced

    for name, method in list(vars(kube.Kube).items()):
        if callable(method) and not name.startswith("_"):
            setattr(kube.Kube, name, wrap(name, method))


#: The trace's key of the process's garbage collections: [["gc<generation>", t0, t1], ...]
GC_KEY = "(gc)"
GCS: list[list] = []  # appended to without a lock (one step under the GIL)


def install_gc_trace() -> None:
    """Trace each garbage collection of this process (gc.callbacks): every thread waits while it runs."""
    import gc
    import time

    started: list[float] = []

    def on_gc(phase, info):  # no lock here: a collection may run in a thread that holds _LOCK
        if phase == "start":
            started[:] = [time.monotonic()]
        elif started:
            GCS.append([f"gc{info.get('generation')}", round(started[0], 4), round(time.monotonic(), 4)])
    gc.callbacks.append(on_gc)


def dump_trace(path: str) -> None:
    with _LOCK:
        data = {**TRACE, GC_KEY: list(GCS)}
    with open(f"{path}.trace", "w") as f:
        json.dump(data, f)


def install() -> None:
    """Wrap the two clients' request methods (before anything creates a client)."""
    import aiohttp
    from kubernetes.client import rest

    original_rest = rest.RESTClientObject.request

    def rest_request(self, method, url, *args, **kwargs):
        count(method, url)
        return original_rest(self, method, url, *args, **kwargs)

    rest.RESTClientObject.request = rest_request

    original_aio = aiohttp.ClientSession._request

    async def aio_request(self, method, str_or_url, *args, **kwargs):
        url = str(str_or_url)
        params = kwargs.get("params")
        if params and "watch" in dict(params):
            url += ("&" if "?" in url else "?") + "watch=true"
        count(method, url)
        m = _TRACED.search(urlsplit(url).path) if method.upper() == "PATCH" else None
        if not m:
            return await original_aio(self, method, str_or_url, *args, **kwargs)
        import time
        t0 = time.monotonic()
        try:
            return await original_aio(self, method, str_or_url, *args, **kwargs)
        finally:
            trace(f"{m.group('ns')}/{m.group('name')}", "kopf-patch", t0, time.monotonic())

    aiohttp.ClientSession._request = aio_request


def dump_objects(signum=None, frame=None) -> None:
    """On SIGUSR1: the live Python objects by type (count, shallow bytes) into $REEL_BENCH_COUNTS.objects."""
    import gc

    by_type: collections.Counter[str] = collections.Counter()
    size: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        by_type[name] += 1
        size[name] += sys.getsizeof(obj)
    path = os.environ.get("REEL_BENCH_COUNTS", "/tmp/reel-operator") + ".objects"
    with open(path, "w") as f:
        for name, n in size.most_common(40):
            f.write(f"{n:>12} {by_type[name]:>9} {name}\n")


def main() -> int:
    import signal

    path = os.environ.get("REEL_BENCH_COUNTS")
    install()
    signal.signal(signal.SIGUSR1, dump_objects)
    if path:
        def loop():
            while True:
                dump(path)
                threading.Event().wait(1.0)
        threading.Thread(target=loop, daemon=True).start()
        atexit.register(dump, path)
        install_trace()
        install_gc_trace()
        atexit.register(dump_trace, path)
    from reel_operator import run
    return run.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
