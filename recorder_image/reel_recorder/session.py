"""The session as the recorder reads it: validated once by reel_api, then read through a typed view.

Validation needs pydantic (reel_api's models), which costs the process ~12 MiB of memory for the whole
recording. So ``reel-recorder`` validates first, then replaces itself (``exec``, same PID) with a fresh
interpreter that receives the validated manifest (defaults filled in) as JSON and never imports pydantic.

The view is plain frozen dataclasses with the API's field names in snake_case: a misspelt name is an
AttributeError, not a silent None, and a spec field the view does not know is refused when the view is
built (``SessionViewError``). reel_api's models stay the one source of truth: tests/unit/test_session_view.py
checks that the view has exactly the models' fields.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

_UPPER = re.compile(r"_([a-z])")


class SessionViewError(ValueError):
    """The validated manifest does not fit the view (a reel_api field the recorder does not know)."""


def validated_manifest(source) -> dict[str, Any]:
    """The manifest with defaults applied (camelCase, status dropped); raises reel_api.SessionError."""
    from reel_api import load_session  # the only pydantic use of the recorder, before the exec

    return load_session(source).to_dict(status=False)


@dataclass(frozen=True, slots=True)
class SecretRef:
    name: str


@dataclass(frozen=True, slots=True)
class Room:
    server: str
    id: int | str
    credentials_secret_ref: SecretRef | None
    ice_servers: tuple[str, ...] | None  # None: not given (host candidates only)
    display_name: str


@dataclass(frozen=True, slots=True)
class Composite:
    width: int
    height: int
    fps: int
    video_bitrate: int  # kbit/s; 0: automatic
    layout: str
    background: str  # "#RRGGBB"
    show_names: bool


@dataclass(frozen=True, slots=True)
class Recording:
    ingest: str
    mode: str
    composite: Composite
    stream_types: str
    subscribe: tuple[str, ...]
    unsubscribe: tuple[str, ...]
    max_idle_seconds: int
    max_duration_seconds: int
    segment_seconds: int
    outputs: tuple[str, ...]
    segment_format: str
    audio_codec: str | None  # None: the format's default (output/formats.py)
    max_restarts: int
    recorder_silence_seconds: int
    reconnect_seconds: int  # a lost Janus connection is regained for this long (room/reconnect.py)


@dataclass(frozen=True, slots=True)
class LocalStorage:
    path: str


@dataclass(frozen=True, slots=True)
class Storage:
    endpoint: str | None
    region: str
    bucket: str | None
    prefix: str
    credentials_secret_ref: SecretRef | None
    server_side_encryption: str
    local: LocalStorage | None


@dataclass(frozen=True, slots=True)
class BackupStorage(Storage):
    keep: bool  # the backfill deletes the backup copies it verified in the primary unless true
    backfill_timeout_seconds: int  # the operator's backfill gives up after this long (the Job's deadline)


@dataclass(frozen=True, slots=True)
class Spec:
    room: Room
    recording: Recording
    storage: Storage
    backup_storage: BackupStorage | None
    stop: bool
    paused: bool
    tag: str | None
    notify: dict | None  # spec.notify (webhooks): the operator sends them; the recorder does not read it


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    namespace: str | None
    spec: Spec
    generation: int | None = None  # metadata.generation of the spec it was started with (status.appliedGeneration)


#: Which nested fields are views themselves.
_NESTED: dict[tuple[type, str], type] = {
    (Spec, "room"): Room, (Spec, "recording"): Recording, (Spec, "storage"): Storage,
    (Recording, "composite"): Composite,
    (Spec, "backup_storage"): BackupStorage, (Room, "credentials_secret_ref"): SecretRef,
    (Storage, "credentials_secret_ref"): SecretRef, (Storage, "local"): LocalStorage,
    (BackupStorage, "credentials_secret_ref"): SecretRef, (BackupStorage, "local"): LocalStorage,
}


def camel(name: str) -> str:
    return _UPPER.sub(lambda m: m.group(1).upper(), name)


def build_view(cls: type, data: Any, where: str = "spec"):
    if not isinstance(data, dict):
        raise SessionViewError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {camel(f.name): f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SessionViewError(f"{where}: field(s) {', '.join(unknown)} unknown to the recorder's session view")
    values = {}
    for key, name in fields.items():
        value = data.get(key)
        nested = _NESTED.get((cls, name))
        if nested is not None and value is not None:
            value = build_view(nested, value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def session_from_manifest(manifest: dict) -> Session:
    """The typed view of a validated manifest (``validated_manifest``'s result)."""
    meta = manifest.get("metadata") or {}
    generation = meta.get("generation")
    return Session(name=meta.get("name", ""), namespace=meta.get("namespace"),
                   spec=build_view(Spec, manifest.get("spec") or {}, "spec"),
                   generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else None)


def session_from_json(text: str) -> Session:
    return session_from_manifest(json.loads(text))
