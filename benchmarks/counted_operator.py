"""``reel-operator`` with every Kubernetes API request it sends counted (for benchmarks/operator_scale.py).

    REEL_BENCH_COUNTS=/tmp/counts.json python benchmarks/counted_operator.py [reel-operator flags...]

Both HTTP clients of the operator are wrapped before it starts: the official ``kubernetes`` client (the
handlers' calls, ``reel_operator/kube.py``) and aiohttp (kopf's watches, patches and Events). Each request is
counted as ``"<VERB> <resource>[/<subresource>]"`` (verbs as the API server names them: get, list, watch,
create, patch, update, delete); the counts are written as JSON to ``$REEL_BENCH_COUNTS`` every second and at
exit. The reel_operator package is whichever is first on ``sys.path`` (PYTHONPATH selects a tree), so the
benchmark can count an older checkout the same way.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import re
import sys
import threading
from urllib.parse import urlsplit

COUNTS: collections.Counter[str] = collections.Counter()
_LOCK = threading.Lock()
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
        return await original_aio(self, method, str_or_url, *args, **kwargs)

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
    from reel_operator import run
    return run.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
