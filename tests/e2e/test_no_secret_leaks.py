"""No secret value ever appears in a session's status, the namespace's Events, the store's manifest.json and
playlists, the recorder pods (spec and logs) or the operator's log (issue 15).

On kind: a Janus whose rooms have a pin, a room secret and an admin key, and a MinIO with its own keys, all
distinctive random values; one session records a participant and completes; one fails on purpose with a wrong
pin (RoomUnauthorized) and one with a wrong S3 secret key (StorageFailed). Every place a person or a tool reads is
then searched for every value (and its base64 form, as a dumped Secret would hold it); the failure names the value
and where it was found. Janus's, MinIO's and the publisher's own logs and specs are test fixtures, not searched.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time

import pytest

from .conftest import ROOMS
from .kit import Kit, list_objects, secret, session_spec, wait_for

TERMINAL = {"Completed", "BackedUp", "Failed"}
ROOM_OK, ROOM_BAD_PIN, ROOM_BAD_S3 = ROOMS[0], ROOMS[1], ROOMS[2]
#: The sessions that fail on purpose, and how (docs/bad-input.md counts them).
FAILING = [("wrong-pin", "RoomUnauthorized"), ("wrong-s3-key", "StorageFailed")]


def _value(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


class Creds:
    """Distinctive values, so that any hit is a leak and not a coincidence."""

    def __init__(self):
        self.admin_key = _value("adm")
        self.room_secret = _value("rsec")
        self.pin = _value("pin")
        self.s3_user = _value("AK").upper()
        self.s3_password = _value("sk")
        self.wrong_pin = _value("wpin")
        self.wrong_s3_password = _value("wsk")

    def values(self) -> dict[str, str]:
        return {"room adminKey": self.admin_key, "room secret": self.room_secret, "room pin": self.pin,
                "AWS_ACCESS_KEY_ID": self.s3_user, "AWS_SECRET_ACCESS_KEY": self.s3_password,
                "wrong pin": self.wrong_pin, "wrong AWS_SECRET_ACCESS_KEY": self.wrong_s3_password}


class RecorderPods:
    """Every recorder pod of the namespace while it exists: its spec and its whole log (followed from the
    container's start: the operator deletes finished pods, so the log cannot be read afterwards)."""

    def __init__(self, kit: Kit, ns: str):
        from kubernetes import watch

        self.kit, self.ns = kit, ns
        self.specs: dict[str, str] = {}
        self.logs: dict[str, str] = {}
        self.errors: list[str] = []
        self._followers: list[threading.Thread] = []
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for event in self._watch.stream(self.kit.core.list_namespaced_pod, self.ns, timeout_seconds=900):
                pod = event["object"]
                name = pod.metadata.name
                if not name.startswith("reel-rec-"):
                    continue
                self.specs[f"{name}@{pod.metadata.uid}"] = json.dumps(self.kit.api.sanitize_for_serialization(pod))
                if name not in self.logs:
                    self.logs[name] = ""
                    t = threading.Thread(target=self._follow, args=(name,), daemon=True)
                    t.start()
                    self._followers.append(t)
        except Exception:  # stop() closes the watch
            pass

    def _follow(self, name: str):
        """``kubectl logs -f`` to the container's end; while the container is not there yet (being created), or
        when the stream broke, read again every half second. The longest read wins."""
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            r = self.kit.kubectl("logs", "-f", "-n", self.ns, name, "-c", "recorder", check=False, timeout=600)
            self._keep(name, r.stdout)
            if r.returncode == 0:
                return
            self.errors.append(f"{name}: {r.stderr.strip()[-300:]}")
            if "NotFound" in r.stderr or "not found" in r.stderr:
                return  # the pod is gone
            time.sleep(0.5)

    def _keep(self, name: str, text: str):
        if len(text) > len(self.logs.get(name, "")):
            self.logs[name] = text

    def stop(self):
        self._watch.stop()
        for t in self._followers:
            t.join(30)


@pytest.fixture
def secret_env(kit, images, crds, request):
    creds = Creds()
    ns = kit.create_namespace("reel-leaks")
    try:
        kit.helm_install("reel", ns)
        server = kit.deploy_janus(ns, ROOMS, admin_key=creds.admin_key, room_secret=creds.room_secret, pin=creds.pin)
        endpoint = kit.deploy_minio(ns, user=creds.s3_user, password=creds.s3_password)
        kit.wait_deployment(ns, "janus")
        kit.wait_deployment(ns, "minio")
        kit.create_bucket(ns, "recordings", user=creds.s3_user, password=creds.s3_password)
        kit.apply(ns, secret("room-wrong-pin", {"adminKey": creds.admin_key, "secret": creds.room_secret,
                                                "pin": creds.wrong_pin}),
                  secret("s3-wrong-key", {"AWS_ACCESS_KEY_ID": creds.s3_user,
                                          "AWS_SECRET_ACCESS_KEY": creds.wrong_s3_password}))
        yield kit, ns, server, endpoint, creds
    finally:
        if getattr(getattr(request.node, "rep_call", None), "failed", True):
            print(kit.dump(ns))
        # the sessions go while the operator runs (it removes their finalizer), else the namespace never goes
        kit.kubectl("delete", "recs", "--all", "-n", ns, "--wait=true", "--timeout=90s", check=False, timeout=120)
        kit.helm_uninstall("reel", ns)
        kit.delete_namespace(ns, wait=False)


def _ready(obj: dict) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def _operator_log(kit: Kit, ns: str) -> str:
    deployments = [d.metadata.name for d in kit.apps.list_namespaced_deployment(ns).items
                   if d.metadata.name not in ("janus", "minio")]
    assert len(deployments) == 1, deployments
    return kit.kubectl("logs", "-n", ns, f"deployment/{deployments[0]}", "--all-containers", "--tail=-1").stdout


def _leaks(places: dict[str, str], values: dict[str, str]) -> list[str]:
    """'<what> found in <where>: ...context...' for every value (or its base64 form) in every place."""
    found = []
    for what, value in values.items():
        forms = {value, base64.b64encode(value.encode()).decode()}
        for where, text in places.items():
            for form in forms:
                at = text.find(form)
                if at >= 0:
                    found.append(f"{what} ({'base64 ' if form != value else ''}{form}) found in {where}: "
                                 f"...{text[max(0, at - 120):at + len(form) + 40]!r}...")
    return found


def test_no_secret_value_in_status_events_store_or_logs(secret_env):
    kit, ns, server, endpoint, creds = secret_env
    pods = RecorderPods(kit, ns)
    good = session_spec(server, ROOM_OK, endpoint=endpoint)
    bad_pin = session_spec(server, ROOM_BAD_PIN, endpoint=endpoint)
    bad_pin["room"]["credentialsSecretRef"] = {"name": "room-wrong-pin"}
    bad_s3 = session_spec(server, ROOM_BAD_S3, endpoint=endpoint)
    bad_s3["storage"]["credentialsSecretRef"] = {"name": "s3-wrong-key"}
    kit.create_session(ns, "good", good)
    kit.create_session(ns, "wrong-pin", bad_pin)
    kit.create_session(ns, "wrong-s3-key", bad_s3)
    pub = kit.start_publisher(ns, "alice", ROOM_OK, None, "--pin", creds.pin)
    kit.wait_published(ns, pub)
    wait_for(lambda: ((kit.session(ns, "good") or {}).get("status") or {}).get("activeParticipants") == 1, 120,
             "alice recorded")
    time.sleep(9)  # two segments or more
    kit.stop_session(ns, "good")
    results = {name: kit.wait_phase(ns, name, TERMINAL, 240) for name in ("good", "wrong-pin", "wrong-s3-key")}
    wait_for(lambda: not [p for p in kit.pods(ns) if p.metadata.name.startswith("reel-rec-")], 120,
             "recorder pods gone")
    pods.stop()

    # the sessions ended as they should, so every path (a recording, two failures) was taken
    good_status = results["good"]["status"]
    assert good_status["phase"] == "Completed", good_status
    for name, reason in FAILING:
        status = results[name]["status"]
        assert status["phase"] == "Failed" and _ready(results[name])["reason"] == reason, status
    # every recorder's log was read (else a leak could hide in a log this test missed)
    assert {"reel-rec-good", "reel-rec-wrong-pin", "reel-rec-wrong-s3-key"} <= set(pods.logs), pods.logs.keys()
    assert all(pods.logs[n].strip() for n in ("reel-rec-good", "reel-rec-wrong-pin", "reel-rec-wrong-s3-key")), \
        ({n: log[-500:] for n, log in pods.logs.items()}, pods.errors[-20:])

    places = {
        "the RecordingSessions (kubectl get recs -o json, status included)":
            kit.kubectl("get", "recs", "-n", ns, "-o", "json").stdout,
        "the namespace's Events (kubectl get events -o json)":
            kit.kubectl("get", "events", "-n", ns, "-o", "json").stdout,
        "the operator's log": _operator_log(kit, ns),
    }
    assert "reel-rec-good" in places["the operator's log"], places["the operator's log"][-2000:]  # the whole log
    places.update({f"the recorder log of {name}": log for name, log in pods.logs.items()})
    places.update({f"the recorder pod {name} (its spec and status)": spec for name, spec in pods.specs.items()})
    stored = 0
    with kit.s3(ns, user=creds.s3_user, password=creds.s3_password) as s3:
        objects = list_objects(s3, "recordings")
        places["the store's object keys"] = "\n".join(objects)
        for key in objects:
            if key.endswith((".json", ".m3u8")):
                places[f"the stored {key}"] = s3.get_object(Bucket="recordings", Key=key)["Body"].read().decode()
                stored += 1
    assert good_status["manifest"] in objects and stored >= 2, objects  # manifest.json and alice's playlist

    leaks = _leaks(places, creds.values())
    assert not leaks, "secret values leaked:\n" + "\n".join(leaks)
    print(f"searched {len(places)} places ({sum(map(len, places.values()))} characters) for "
          f"{len(creds.values())} secret values: none found")
