"""The RecordingSession API (reel.dev/v1alpha1), shared by the operator and the recorder.

`vocabulary` holds the phases, stop reasons, conditions and reasons (standard library only), `models` the
pydantic models (the single source of truth of the schema), `loader` reads manifests as users write them
(`load_session`), `crd` generates the CustomResourceDefinition from the models.

The vocabulary is imported at once; the models and the loader (pydantic) only when one of their names is
first used (PEP 562), so `import reel_api.vocabulary` costs the recorder no pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .vocabulary import *  # noqa: F403
from .vocabulary import __all__ as _vocabulary_all

_LOADER = ("SessionError", "load_session", "validate_update")
# models.__all__ without the vocabulary it re-exports (tests/unit/test_vocabulary.py checks the two agree).
_MODELS = (
    "API_VERSION",
    "CATEGORIES",
    "CRD_NAME",
    "DEFAULT_BACKFILL_TIMEOUT_SECONDS",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "BackfillStatus",
    "BackupStorage",
    "Condition",
    "Ingest",
    "IntOrString",
    "Interruption",
    "LocalStorage",
    "Mode",
    "Notify",
    "ObjectMeta",
    "Output",
    "Participant",
    "Recording",
    "RecordingSession",
    "RecordingSessionSpec",
    "RecordingSessionStatus",
    "Room",
    "RoomStatus",
    "SecretKeyRef",
    "SecretRef",
    "SegmentFormat",
    "AudioCodec",
    "SkippedStream",
    "ServerSideEncryption",
    "SpoolStatus",
    "Storage",
    "StorageLocation",
    "StreamTypes",
    "UploadStatus",
    "Webhook",
)
_LAZY = {**dict.fromkeys(_LOADER, ".loader"), **dict.fromkeys(_MODELS, ".models")}

__all__ = [*_LOADER, *_vocabulary_all, *_MODELS]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
