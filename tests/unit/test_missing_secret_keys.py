"""A Secret named by a session that is missing, or lacks a key the recorder needs: the recorder pod cannot start
(its Secret volumes are not optional and the storage ones list their keys), and the operator fails the session
``SecretNotFound`` with a message naming the spec field and what to add, whichever way the kubelet says it (a
container config error or a FailedMount Event). Part of the bad-input catalogue (docs/bad-input.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reel_api import load_session
from reel_operator import podspec, podstate
from reel_operator.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CREATED = (NOW - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
FIELDS = {"room-credentials": "spec.room.credentialsSecretRef",
          "storage-credentials": "spec.storage.credentialsSecretRef",
          "backup-storage-credentials": "spec.backupStorage.credentialsSecretRef"}

# (volume, kubelet's message after the volume name, words the session's message must hold besides the field)
MISSING = [
    ("room-credentials", 'secret "room-1234" not found', ["room-1234", "create the Secret"]),
    ("storage-credentials", 'secret "s3" not found', ['"s3"', "create the Secret"]),
    ("backup-storage-credentials", 'secret "s3-backup" not found', ["s3-backup", "create the Secret"]),
    ("storage-credentials", "couldn't find key AWS_ACCESS_KEY_ID in Secret media/s3",
     ["AWS_ACCESS_KEY_ID", "add the key"]),
    ("storage-credentials", "couldn't find key AWS_SECRET_ACCESS_KEY in Secret media/s3",
     ["AWS_SECRET_ACCESS_KEY", "add the key"]),
    ("backup-storage-credentials", "couldn't find key AWS_ACCESS_KEY_ID in Secret media/s3-backup",
     ["AWS_ACCESS_KEY_ID", "s3-backup", "add the key"]),
    ("backup-storage-credentials", "couldn't find key AWS_SECRET_ACCESS_KEY in Secret media/s3-backup",
     ["AWS_SECRET_ACCESS_KEY", "add the key"]),
]


def pod(state=None):
    status = {"phase": "Pending"}
    if state is not None:
        status["containerStatuses"] = [{"name": "recorder", "state": state}]
    return {"metadata": {"name": "reel-rec-s", "namespace": "media", "creationTimestamp": CREATED},
            "spec": {"containers": [{"name": "recorder", "image": "reel/recorder:1"}]}, "status": status}


def judge(p, events=()):
    return podstate.judge_pod(podstate.pod_view(p), namespace="media", now=NOW, start_timeout=60, events=events)


@pytest.mark.parametrize("volume,text,words", MISSING, ids=[f"{v}: {t}" for v, t, _ in MISSING])
def test_a_failed_mount_of_a_missing_secret_or_key_names_the_field(volume, text, words):
    events = [{"type": "Normal", "reason": "Scheduled", "message": "assigned"},
              {"type": "Warning", "reason": "FailedMount",
               "message": f'MountVolume.SetUp failed for volume "{volume}" : {text}'}]
    v = judge(pod({"waiting": {"reason": "ContainerCreating"}}), events)
    assert (v.phase, v.reason) == ("Failed", "SecretNotFound"), v
    for word in (FIELDS[volume], "namespace media" if "not found" in text else "new RecordingSession", *words):
        assert word in v.message, (word, v.message)


@pytest.mark.parametrize("text", ['secret "room-1234" not found',
                                  "couldn't find key AWS_SECRET_ACCESS_KEY in Secret media/s3"])
def test_a_container_config_error_about_a_secret_is_secret_not_found(text):
    v = judge(pod({"waiting": {"reason": "CreateContainerConfigError", "message": text}}))
    assert (v.phase, v.reason) == ("Failed", "SecretNotFound") and text in v.message


def test_other_mount_failures_are_not_blamed_on_a_secret():
    events = [{"type": "Warning", "reason": "FailedMount",
               "message": 'MountVolume.SetUp failed for volume "spool" : no space left on device'}]
    assert judge(pod({"waiting": {"reason": "ContainerCreating"}}), events) is None


def test_the_pod_makes_missing_keys_a_mount_failure_not_a_late_recorder_error():
    """The storage Secret volumes list both keys (a missing one fails the mount, reported above) and no Secret
    volume is optional; the room Secret's keys are each optional (pin, secret, adminKey, token: a missing pin
    is Janus's refusal, RoomUnauthorized, tests/integration/test_recorder.py::test_wrong_pin)."""
    session = load_session({
        "apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
        "metadata": {"name": "s", "namespace": "media", "uid": "u-1"},
        "spec": {"room": {"server": "ws://janus:8188", "id": 1, "credentialsSecretRef": {"name": "room-1234"}},
                 "storage": {"bucket": "rec", "endpoint": "http://minio:9000", "credentialsSecretRef": {"name": "s3"}},
                 "backupStorage": {"bucket": "bak", "endpoint": "http://minio:9000",
                                   "credentialsSecretRef": {"name": "s3-backup"}}}})
    volumes = {v["name"]: v for v in podspec.build_pod(session, Settings())["spec"]["volumes"]}
    assert set(FIELDS) <= set(volumes) and podspec.VOLUME_FIELDS == FIELDS
    for name in FIELDS:
        assert volumes[name]["secret"]["optional"] is False
    for name in ("storage-credentials", "backup-storage-credentials"):
        assert [i["key"] for i in volumes[name]["secret"]["items"]] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert "items" not in volumes["room-credentials"]["secret"]
