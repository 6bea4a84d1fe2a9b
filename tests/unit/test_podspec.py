"""The pure builders of reel_operator: names, labels and ownership (names), the pod (podspec), ServiceAccount,
Role, RoleBinding (rbac), the room lock Lease (lock)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reel_api import load_session
from reel_operator import lock, names, podspec, rbac
from reel_operator.settings import RESOURCES_ANNOTATION, Settings, SettingsError

UID = "0b7c3f0e-1111-2222-3333-444455556666"


def session(spec_extra: dict | None = None, name: str = "standup-1125", annotations: dict | None = None,
            room: dict | None = None):
    spec = {
        "room": {"server": "ws://janus.media.svc:8188", "id": 1234, **(room or {})},
        "storage": {"bucket": "recordings", "endpoint": "http://minio.media.svc:9000"},
        **(spec_extra or {}),
    }
    meta = {"name": name, "namespace": "media", "uid": UID, "generation": 3,
            "annotations": annotations or {}, "managedFields": [{"manager": "kubectl"}]}
    return load_session({"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession", "metadata": meta,
                         "spec": spec, "status": {"phase": "Recording"}})


def container(pod):
    (c,) = pod["spec"]["containers"]
    return c


def env_of(pod) -> dict:
    return {e["name"]: e for e in container(pod)["env"]}


def test_pod_identity_labels_and_owner():
    s = session()
    pod = podspec.build_pod(s, Settings())
    meta = pod["metadata"]
    assert meta["name"] == "reel-rec-standup-1125" == names.object_name("standup-1125")
    assert meta["namespace"] == "media"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "reel-operator"
    assert meta["labels"]["reel.dev/session"] == "standup-1125"
    assert meta["labels"]["reel.dev/room-key"] == names.room_key(s)
    (owner,) = meta["ownerReferences"]
    assert owner == {"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession", "name": "standup-1125",
                     "uid": UID, "controller": True, "blockOwnerDeletion": True}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"] == "reel-rec-standup-1125"
    assert pod["spec"]["automountServiceAccountToken"] is True
    assert pod["spec"]["enableServiceLinks"] is False


def test_pod_name_is_deterministic_and_bounded():
    long = "s" * 250
    name = names.object_name(long)
    assert len(name) <= 63 and name == names.object_name(long)
    assert name != names.object_name("s" * 249)
    assert names.label_value(long) == names.bounded(long, 63) and len(names.label_value(long)) <= 63


def test_owned_by_compares_the_session_uid():
    pod = podspec.build_pod(session(), Settings())
    assert names.owned_by(pod, {"name": "standup-1125", "uid": UID})
    assert not names.owned_by(pod, {"name": "standup-1125", "uid": "uid-of-an-earlier-session"})
    assert not names.owned_by({"metadata": {"name": "reel-rec-standup-1125"}}, {"uid": UID})  # no ownerReferences
    assert not names.owned_by({"metadata": {"ownerReferences": None}}, {"uid": UID})
    assert not names.owned_by(None, {"uid": UID})  # no pod
    assert not names.owned_by(pod, {"name": "standup-1125"})  # a session without uid owns nothing
    lease = lock.build_room_lock(session(), datetime(2026, 11, 25, tzinfo=UTC))
    assert names.owned_by(lease, {"uid": UID})  # owned, not controlled, counts too


def test_owner_session_is_the_controlling_session():
    pod = podspec.build_pod(session(), Settings())
    assert names.owner_session(pod) == ("standup-1125", UID)
    lease = lock.build_room_lock(session(), datetime(2026, 11, 25, tzinfo=UTC))
    assert names.owner_session(lease) is None  # owned, not controlled
    assert names.owner_session({"metadata": {}}) is None


def test_hardened_security_context():
    pod = podspec.build_pod(session(), Settings())
    psc = pod["spec"]["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["fsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = container(pod)["securityContext"]
    assert csc["runAsNonRoot"] is True and csc["runAsUser"] == 10001
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False and csc["privileged"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_secrets_only_by_reference():
    s = session({"backupStorage": {"bucket": "backup", "credentialsSecretRef": {"name": "s3-backup"}}},
                room={"credentialsSecretRef": {"name": "room-1234"}})
    s.spec.storage.credentials_secret_ref = type(s.spec.room.credentials_secret_ref)(name="s3")
    pod = podspec.build_pod(s, Settings())
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["room-credentials"]["secret"] == {"secretName": "room-1234", "optional": False,
                                                     "defaultMode": 0o440}
    assert volumes["storage-credentials"]["secret"]["secretName"] == "s3"
    assert [i["key"] for i in volumes["storage-credentials"]["secret"]["items"]] == [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert volumes["backup-storage-credentials"]["secret"]["secretName"] == "s3-backup"
    mounts = {m["name"]: m for m in container(pod)["volumeMounts"]}
    assert mounts["room-credentials"] == {"name": "room-credentials", "mountPath": podspec.ROOM_SECRETS_DIR,
                                          "readOnly": True}
    args = container(pod)["args"]
    assert args[args.index("--room-secrets") + 1] == podspec.ROOM_SECRETS_DIR
    assert args[args.index("--storage-secrets") + 1] == podspec.STORAGE_SECRETS_DIR
    assert args[args.index("--backup-storage-secrets") + 1] == podspec.BACKUP_STORAGE_SECRETS_DIR
    # no secret value anywhere in the pod: env holds only references and the session (which has none)
    for e in container(pod)["env"]:
        assert "secretKeyRef" not in e.get("valueFrom", {})
    assert "room-1234" in json.dumps(pod)  # by name only


def test_no_secret_volumes_without_refs():
    pod = podspec.build_pod(session(), Settings())
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"spool", "tmp"}
    assert "--room-secrets" not in container(pod)["args"]


def test_env_session_manifest_and_downward_api():
    s = session({"tag": "weekly"})
    env = env_of(podspec.build_pod(s, Settings()))
    manifest = json.loads(env["REEL_SESSION"]["value"])
    assert "status" not in manifest
    assert manifest["metadata"] == {"name": "standup-1125", "namespace": "media", "uid": UID, "generation": 3}
    assert manifest["spec"]["recording"]["maxIdleSeconds"] == 30  # defaults filled in
    assert load_session(env["REEL_SESSION"]["value"]).spec.tag == "weekly"  # the recorder can read it
    assert env["REEL_STATUS_TARGET"]["value"] == "media/standup-1125"
    assert env["REEL_MEDIA_ADDRESS"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_spool_grace_and_termination_message():
    pod = podspec.build_pod(session(), Settings(termination_grace_seconds=600, spool_size_limit="5Gi"))
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["spool"] == {"name": "spool", "emptyDir": {"sizeLimit": "5Gi"}}
    assert pod["spec"]["terminationGracePeriodSeconds"] == 600
    c = container(pod)
    assert c["args"][c["args"].index("--upload-timeout") + 1] == "580"
    assert c["args"][c["args"].index("--spool") + 1] == podspec.SPOOL_DIR
    # the recorder image makes that folder for the recorder's user: one spool path
    dockerfile = (Path(__file__).resolve().parents[2] / "recorder_image" / "Dockerfile").read_text()
    assert f"mkdir -p {podspec.SPOOL_DIR} && chown 10001:10001 {podspec.SPOOL_DIR}" in dockerfile
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["args"][c["args"].index("--termination-log") + 1] == "/dev/termination-log"


def test_resources_defaults_and_override():
    settings = Settings(requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "1", "memory": "512Mi"})
    assert container(podspec.build_pod(session(), settings))["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
    # a request may be removed (Kubernetes then uses the limit); a limit may not (test_resource_limits.py)
    s = session(annotations={RESOURCES_ANNOTATION: json.dumps({"limits": {"memory": "1Gi", "cpu": "2"},
                                                              "requests": {"cpu": "250m", "memory": ""}})})
    assert container(podspec.build_pod(s, settings))["resources"] == {
        "requests": {"cpu": "250m"}, "limits": {"cpu": "2", "memory": "1Gi"}}


def test_composite_sessions_get_their_own_resources():
    settings = Settings.from_env({})
    for mode in ("composite", "both"):
        s = session({"recording": {"mode": mode}})
        assert container(podspec.build_pod(s, settings))["resources"] == {
            "requests": {"cpu": "300m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "768Mi"}}
    s = session({"recording": {"mode": "composite"}},
                annotations={RESOURCES_ANNOTATION: json.dumps({"limits": {"cpu": "4"}})})
    assert container(podspec.build_pod(s, settings))["resources"]["limits"] == {"cpu": "4", "memory": "768Mi"}
    env = Settings.from_env({"REEL_COMPOSITE_CPU_LIMIT": "", "REEL_COMPOSITE_MEMORY_REQUEST": "1Gi"})
    assert env.composite_limits == {"memory": "768Mi"} and env.composite_requests == {"cpu": "300m", "memory": "1Gi"}


@pytest.mark.parametrize("raw", ["{not json", '["x"]', '{"limit": {}}', '{"limits": {"memory": [1]}}'])
def test_resources_override_errors(raw):
    with pytest.raises(names.BuildError, match=RESOURCES_ANNOTATION):
        podspec.build_pod(session(annotations={RESOURCES_ANNOTATION: raw}), Settings())


def test_settings_from_env():
    s = Settings.from_env({
        "REEL_RECORDER_IMAGE": "example.org/reel/recorder:1.0", "REEL_RECORDER_IMAGE_PULL_POLICY": "Always",
        "REEL_RECORDER_MEMORY_LIMIT": "", "REEL_RECORDER_CPU_REQUEST": "200m", "REEL_NAMESPACES": "media, other",
        "REEL_TERMINATION_GRACE_SECONDS": "120", "REEL_RECORDER_NODE_SELECTOR": '{"media": "yes"}',
        "REEL_PEERING_PRIORITY": "7", "REEL_STANDALONE": "true", "REEL_METRICS_PORT": "9090"})
    assert s.recorder_image == "example.org/reel/recorder:1.0" and s.image_pull_policy == "Always"
    assert s.limits == {"cpu": "1"} and s.requests == {"cpu": "200m", "memory": "128Mi"}
    assert s.namespaces == ("media", "other") and not s.clusterwide
    assert s.termination_grace_seconds == 120 and s.delete_timeout_seconds == 150
    assert s.peering_priority == 7 and s.standalone and s.metrics_port == 9090
    assert Settings.from_env({}).metrics_port == 0  # off unless asked for
    pod = podspec.build_pod(session(), s)
    assert pod["spec"]["nodeSelector"] == {"media": "yes"}
    assert container(pod)["image"] == "example.org/reel/recorder:1.0"
    assert Settings.from_env({}).clusterwide
    with pytest.raises(SettingsError, match="REEL_RECORDER_IMAGE_PULL_POLICY"):
        Settings.from_env({"REEL_RECORDER_IMAGE_PULL_POLICY": "Sometimes"})
    with pytest.raises(SettingsError, match="REEL_TERMINATION_GRACE_SECONDS"):
        Settings.from_env({"REEL_TERMINATION_GRACE_SECONDS": "soon"})
    with pytest.raises(SettingsError, match="REEL_METRICS_PORT"):
        Settings.from_env({"REEL_METRICS_PORT": "-1"})


def test_local_storage_volume():
    s = load_session({"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
                      "metadata": {"name": "x", "namespace": "media", "uid": UID},
                      "spec": {"room": {"server": "ws://j:8188", "id": 1}, "storage": {"local": {"path": "/rec"}}}})
    pod = podspec.build_pod(s, Settings())
    assert {"name": "recordings-0", "mountPath": "/rec"} in container(pod)["volumeMounts"]
    assert {"name": "recordings-0", "emptyDir": {}} in pod["spec"]["volumes"]
    pod = podspec.build_pod(s, Settings(local_storage_claim="recordings"))
    assert {"name": "recordings-0", "persistentVolumeClaim": {"claimName": "recordings"}} in pod["spec"]["volumes"]


def test_rbac_allows_only_own_status():
    s = session()
    role = rbac.build_role(s)
    assert role["rules"] == [{"apiGroups": ["reel.dev"], "resources": ["recordingsessions/status"],
                              "resourceNames": ["standup-1125"], "verbs": ["get", "patch"]}]
    binding = rbac.build_role_binding(s)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "reel-rec-standup-1125"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "reel-rec-standup-1125",
                                    "namespace": "media"}]
    sa = rbac.build_service_account(s)
    for obj in (role, binding, sa):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == UID
        assert obj["metadata"]["name"] == "reel-rec-standup-1125"


def test_room_key_same_room_same_key():
    a = session()
    assert names.room_key(a) == names.room_key(session(name="other"))
    assert names.room_key(a) == names.room_key(session(room={"server": "ws://Janus.Media.svc:8188/"}))
    assert names.room_key(a) == names.room_key(session(room={"id": "1234"}))  # Janus sees the same room
    assert names.room_key(a) != names.room_key(session(room={"id": 1235}))
    assert names.room_key(a) != names.room_key(session(room={"server": "ws://janus-2.media.svc:8188"}))
    key = names.room_key(a)
    assert len(key) == 16 and key.isalnum()


def test_room_lock_lease():
    s = session()
    now = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    lease = lock.build_room_lock(s, now)
    assert lease["metadata"]["name"] == f"reel-room-{names.room_key(s)}"
    assert lease["spec"] == {"holderIdentity": f"media/standup-1125/{UID}",
                             "acquireTime": "2026-11-25T10:00:00.123456Z"}
    owner = lease["metadata"]["ownerReferences"][0]
    assert owner["uid"] == UID and owner["controller"] is False
    assert lock.parse_holder(lease["spec"]["holderIdentity"]) == ("media", "standup-1125", UID)
    assert lock.parse_holder("garbage") is None


def test_annotations_safe_to_evict_and_restart_number():
    pod = podspec.build_pod(session(), Settings())
    annotations = pod["metadata"]["annotations"]
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"  # no scale-down mid-recording
    assert annotations["reel.dev/restart"] == "0" and annotations["reel.dev/session-generation"] == "3"
    assert "REEL_RESUME" not in env_of(pod)  # a first recorder starts afresh


def test_replacement_pod_resumes_the_recording():
    resume = {"recordingId": "01JREC", "prefix": "2026-11-30/1234_101500_01JREC/", "reason": "Evicted",
              "interruptedAt": "2026-11-30T10:20:00Z"}
    pod = podspec.build_pod(session(), Settings(), restart=2, resume=resume)
    assert pod["metadata"]["name"] == "reel-rec-standup-1125"  # the same name: the lost pod is gone first
    assert pod["metadata"]["annotations"]["reel.dev/restart"] == "2"
    assert json.loads(env_of(pod)["REEL_RESUME"]["value"]) == resume
    fresh = podspec.build_pod(session(), Settings(), restart=1)  # lost before it reported a recording
    assert fresh["metadata"]["annotations"]["reel.dev/restart"] == "1" and "REEL_RESUME" not in env_of(fresh)


def test_liveness_probe_asks_the_recorders_event_loop():
    """The probe and the recorder agree on the port and path; it tolerates the start and kills a loop wedged for
    ~30 s (3 failures, 10 s apart), which the recorder's endpoint reports after 10 s without a beat."""
    from reel_recorder import liveness
    from reel_recorder.settings import Settings as RecorderSettings

    c = container(podspec.build_pod(session(), Settings()))
    probe = c["livenessProbe"]
    assert probe["httpGet"] == {"path": liveness.PATH, "port": "liveness"}
    assert c["ports"] == [{"name": "liveness", "containerPort": 8086, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9102, "protocol": "TCP"}]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert RecorderSettings.from_env(env).liveness_port == 8086
    assert RecorderSettings.from_env(env).metrics_port == 9102  # the named port the recorder PodMonitor scrapes
    assert (probe["periodSeconds"], probe["failureThreshold"], probe["timeoutSeconds"]) == (10, 3, 2)
    assert probe["initialDelaySeconds"] >= 10 and probe["timeoutSeconds"] < probe["periodSeconds"]
    assert probe["periodSeconds"] >= liveness.STALE_AFTER > liveness.BEAT
    # with restartPolicy Never the kubelet ignores a probe-level grace period: none is set, none pretended
    assert "terminationGracePeriodSeconds" not in probe
    probe["periodSeconds"] = 1  # each pod gets its own copy
    assert container(podspec.build_pod(session(), Settings()))["livenessProbe"]["periodSeconds"] == 10
