"""The RecordingSession API (reel.dev/v1alpha1), shared by the operator and the recorder.

`models` holds the pydantic models (the single source of truth), `loader` reads manifests as users write them
(`load_session`), `crd` generates the CustomResourceDefinition from the models.
"""

from .loader import SessionError, load_session, validate_update
from .models import *  # noqa: F403
from .models import __all__ as _models_all

__all__ = ["SessionError", "load_session", "validate_update", *_models_all]
