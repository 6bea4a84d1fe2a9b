"""Programs the cluster tests run inside pods (stdlib only).

  hello            print a greeting with the Python version
  serve PORT       answer every GET with "reel-echo <hostname>"
  sleep            sleep forever
  probe URL        fetch URL through a Service name, query the API server in-cluster with the pod's
                   service account, try to resolve a name outside the cluster; print one JSON line
"""

import json
import os
import socket
import ssl
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

SA = "/var/run/secrets/kubernetes.io/serviceaccount"


class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"reel-echo {socket.gethostname()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def fetch(url, attempts=30, **kw):
    last = None
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=3, **kw) as r:
                return r.status, r.read().decode()
        except OSError as e:
            last = e
            time.sleep(1)
    return None, repr(last)


def probe(url):
    out = {}
    out["service_status"], out["service_body"] = fetch(url)
    with open(f"{SA}/token") as f:
        token = f.read()
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ["KUBERNETES_SERVICE_PORT"]
    ctx = ssl.create_default_context(cafile=f"{SA}/ca.crt")
    auth = {"Authorization": f"Bearer {token}"}
    req = urllib.request.Request(f"https://{host}:{port}/version", headers=auth)
    out["api_status"], body = fetch(req, context=ctx)
    out["api_version"] = json.loads(body).get("gitVersion") if out["api_status"] == 200 else body
    # the same through the API server's Service name, resolved by CoreDNS
    req = urllib.request.Request("https://kubernetes.default.svc/version", headers=auth)
    out["api_dns_status"], _ = fetch(req, context=ctx)
    try:
        socket.getaddrinfo("example.com", 443)
        out["outside_name"] = "resolved"
    except socket.gaierror as e:
        out["outside_name"] = f"unresolved: {e}"
    print(json.dumps(out), flush=True)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "hello"
    if cmd == "hello":
        v = sys.version_info
        print(f"reel-cluster-test hello from Python {v.major}.{v.minor}", flush=True)
    elif cmd == "serve":
        HTTPServer(("", int(sys.argv[2])), Echo).serve_forever()
    elif cmd == "sleep":
        while True:
            time.sleep(3600)
    elif cmd == "probe":
        probe(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
