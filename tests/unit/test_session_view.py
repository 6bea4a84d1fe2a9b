"""The recorder's typed session view (reel_recorder/session.py) and its settings (reel_recorder/settings.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from tests.support.recorder_proc import session_manifest

from reel_api import models
from reel_recorder import session as view
from reel_recorder.settings import Settings, SettingsError

# view class -> the reel_api model it mirrors
MIRRORS = {view.Spec: models.RecordingSessionSpec, view.Room: models.Room, view.Recording: models.Recording,
           view.Storage: models.Storage, view.LocalStorage: models.LocalStorage, view.SecretRef: models.SecretRef,
           view.Composite: models.Composite, view.BackupStorage: models.BackupStorage}


@pytest.mark.parametrize("cls", list(MIRRORS), ids=lambda c: c.__name__)
def test_the_view_has_exactly_the_fields_of_the_api_model(cls):
    assert {f.name for f in dataclasses.fields(cls)} == set(MIRRORS[cls].model_fields)


def manifest(**recording) -> dict:
    return view.validated_manifest(yaml.safe_dump(session_manifest("ws://janus:8188", 7, recording=recording or None,
                                                                   tag="weekly")))


def test_a_validated_manifest_reads_through_typed_attributes():
    s = view.session_from_json(json.dumps(manifest(subscribe=["alice"], outputs=["hls", "mp4"])))
    assert s.name == "test" and s.spec.room.id == 7 and s.spec.room.display_name == "reel-recorder"
    assert s.spec.recording.subscribe == ("alice",) and s.spec.recording.outputs == ("hls", "mp4")
    assert s.spec.recording.max_idle_seconds == 30 and s.spec.tag == "weekly" and s.spec.backup_storage is None
    assert s.spec.storage.local.path == "/unused" and s.spec.storage.region == "us-east-1"
    with pytest.raises(AttributeError):
        _ = s.spec.recording.max_idel_seconds  # a misspelt name fails, it does not read as None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.spec.recording.segment_seconds = 1


def test_a_field_the_view_does_not_know_is_refused():
    m = manifest()
    m["spec"]["recording"]["newThing"] = 1
    with pytest.raises(view.SessionViewError, match=r"spec\.recording: field\(s\) newThing"):
        view.session_from_manifest(m)


def test_settings_read_every_variable_once_and_refuse_what_cannot_work():
    s = Settings.from_env({"REEL_STATUS_TARGET": "media/standup", "REEL_SPEC_POLL_SECONDS": "0.5",
                           "REEL_MEDIA_ADDRESS": "10.0.0.5", "REEL_ROOM_PIN": "42", "REEL_LOG_LEVEL": "debug"})
    assert s.in_pod and s.status_target == ("media", "standup") and s.spec_poll_seconds == 0.5
    assert s.media_address == "10.0.0.5" and s.room.pin == "42" and s.log_level == "DEBUG"
    assert not Settings.from_env({}).in_pod
    for env, what in [({"REEL_SPEC_POLL_SECONDS": "0"}, "REEL_SPEC_POLL_SECONDS"),
                      ({"REEL_SPEC_POLL_SECONDS": "soon"}, "REEL_SPEC_POLL_SECONDS"),
                      ({"REEL_LOG_LEVEL": "chatty"}, "REEL_LOG_LEVEL"),
                      ({"REEL_STATUS_TARGET": "media/"}, "REEL_STATUS_TARGET")]:
        with pytest.raises(SettingsError, match=what):
            Settings.from_env(env)
