"""The RecordingSession models: defaults, load_session, update rules."""

import textwrap

import pytest

from reel_api import (
    Ingest,
    Output,
    Phase,
    RecordingSession,
    SegmentFormat,
    ServerSideEncryption,
    SessionError,
    StreamTypes,
    load_session,
    validate_update,
)

MINIMAL = textwrap.dedent(
    """\
    apiVersion: reel.dev/v1alpha1
    kind: RecordingSession
    metadata: {name: standup-1125, namespace: media}
    spec:
      room: {server: "ws://janus.media.svc:8188", id: 1234}
      storage: {bucket: recordings}
    """
)


def test_defaults():
    s = load_session(MINIMAL)
    assert s.metadata.name == "standup-1125" and s.metadata.namespace == "media"
    room, rec, sto = s.spec.room, s.spec.recording, s.spec.storage
    assert room.id == 1234 and room.display_name == "reel-recorder" and room.credentials_secret_ref is None
    assert (
        rec.ingest is Ingest.AUTO and rec.mode == "individual" and rec.stream_types is StreamTypes.AUDIO_VIDEO
    )
    assert rec.subscribe == [] and rec.unsubscribe == []
    assert (rec.max_idle_seconds, rec.max_duration_seconds, rec.segment_seconds) == (30, 0, 4)
    assert rec.outputs == [Output.HLS] and rec.segment_format is SegmentFormat.TS
    assert sto.region == "us-east-1" and sto.prefix == "{date}/{room}_{time}_{recordingId}/"
    assert sto.server_side_encryption is ServerSideEncryption.NONE and sto.local is None
    assert s.spec.backup_storage is None and s.spec.stop is False and s.spec.paused is False
    assert s.spec.tag is None


def test_to_dict_is_kubernetes_form():
    d = load_session(MINIMAL).to_dict(status=False)
    assert d["spec"]["room"] == {
        "server": "ws://janus.media.svc:8188",
        "id": 1234,
        "displayName": "reel-recorder",
    }
    assert d["spec"]["recording"]["maxIdleSeconds"] == 30
    assert d["spec"]["storage"]["serverSideEncryption"] == ""
    assert "status" not in d and "backupStorage" not in d["spec"]
    # round trip
    assert RecordingSession.model_validate(d) == load_session(MINIMAL)


def test_snake_case_and_camel_case_both_accepted():
    d = load_session(MINIMAL).to_dict()
    d["spec"]["recording"] = {"max_idle_seconds": 60, "segmentSeconds": 2}
    s = RecordingSession.model_validate(d)
    assert s.spec.recording.max_idle_seconds == 60 and s.spec.recording.segment_seconds == 2


def test_status_is_ignored_by_load_session_but_parsed_by_the_model():
    text = MINIMAL + "status: {phase: NotAPhase, whatever: 1}\n"
    assert load_session(text).status.phase is None
    d = load_session(MINIMAL).to_dict()
    d["status"] = {"phase": "Recording", "kopf": {"x": 1}, "upload": {"progress": 50}}
    s = RecordingSession.model_validate(d)
    assert s.status.phase is Phase.RECORDING and s.status.upload.progress == 50


def test_string_room_id_and_local_storage(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(
        MINIMAL.replace("id: 1234", 'id: "standup"').replace("{bucket: recordings}", "{local: {path: /rec}}")
    )
    s = load_session(f)
    assert (
        s.spec.room.id == "standup" and s.spec.storage.local.path == "/rec" and s.spec.storage.bucket is None
    )
    assert load_session(str(f)) == s


def test_every_problem_is_listed_with_its_path():
    text = MINIMAL.replace("id: 1234", "id: 0").replace("{bucket: recordings}", "{bucket: Bad_Bucket}")
    text += "  recording: {maxIdleSeconds: 1, ingest: whip}\n"
    with pytest.raises(SessionError) as e:
        load_session(text)
    paths = [p for p, _ in e.value.problems]
    assert paths == [
        "spec.room.id",
        "spec.recording.ingest",
        "spec.recording.maxIdleSeconds",
        "spec.storage.bucket",
    ]
    text = str(e.value)
    assert text.startswith('invalid RecordingSession "standup-1125": 4 problems:')
    assert "spec.recording.maxIdleSeconds: should be greater than or equal to 5 (got 1)" in text
    assert 'spec.recording.ingest: Unsupported value: "whip": supported values: "forward", "webrtc", "auto"' in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected exactly one YAML document, found 0"),
        (MINIMAL + "---\n" + MINIMAL, "expected exactly one YAML document, found 2"),
        ("[1, 2]\n", "expected a YAML mapping"),
        ("a: [\n", "not valid YAML"),
        (MINIMAL.replace("reel.dev/v1alpha1", "reel.dev/v1"), 'apiVersion: must be "reel.dev/v1alpha1"'),
        (MINIMAL.replace("kind: RecordingSession", "kind: Pod"), 'kind: must be "RecordingSession"'),
        (MINIMAL.replace("name: standup-1125, ", ""), "metadata.name: Required value"),
    ],
)
def test_not_a_session(text, expected):
    with pytest.raises(SessionError) as e:
        load_session(text if text else "\n")
    assert expected in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(SessionError, match="cannot read"):
        load_session(tmp_path / "nope.yaml")


def test_validate_update():
    old = load_session(MINIMAL)
    stopped = old.model_copy(update={"spec": old.spec.model_copy(update={"stop": True})})
    validate_update(old, stopped)  # setting stop is fine
    validate_update(old, old)
    with pytest.raises(SessionError, match="stop cannot go back from true to false"):
        validate_update(stopped, old)
    other_room = load_session(MINIMAL.replace("id: 1234", "id: 99"))
    with pytest.raises(SessionError, match=r"spec\.room: room is immutable"):
        validate_update(old, other_room)
    other_bucket = load_session(MINIMAL.replace("recordings", "other"))
    with pytest.raises(SessionError, match=r"spec\.storage: storage is immutable"):
        validate_update(old, other_bucket)


def test_parses_an_object_as_the_apiserver_returns_it():
    """Server-set metadata is kept, unknown status fields (e.g. kopf's) ignored, timestamps are aware."""
    d = load_session(MINIMAL).to_dict()
    d["metadata"] |= {
        "uid": "u-1",
        "generation": 3,
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "finalizers": ["x"],
    }
    d["status"] = {
        "phase": "Recording",
        "startedAt": "2024-01-01T00:00:01Z",
        "participants": [{"id": 123, "display": "alice", "joinedAt": "2024-01-01T00:00:02Z"}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Recording",
                "lastTransitionTime": "2024-01-01T00:00:01Z",
            }
        ],
        "kopf": {"progress": {}},
    }
    s = RecordingSession.model_validate(d)
    assert s.metadata.generation == 3 and s.metadata.model_extra["finalizers"] == ["x"]
    assert s.status.participants[0].id == 123 and s.status.conditions[0].status == "True"
    assert s.status.started_at.utcoffset() is not None
    out = s.to_dict()
    assert out["metadata"]["finalizers"] == ["x"] and "kopf" not in out["status"]
    assert out["status"]["conditions"][0]["lastTransitionTime"] == "2024-01-01T00:00:01Z"
    d["status"]["startedAt"] = "2024-01-01T00:00:01"  # no time zone: not RFC 3339
    with pytest.raises(ValueError, match="timezone"):
        RecordingSession.model_validate(d)
