"""The recorder's typed session view (reel_recorder/session.py) built the way the recorder builds it."""

from __future__ import annotations

from reel_recorder.session import Storage, build_view


def storage_view(**fields) -> Storage:
    """A storage spec as the recorder sees it: validated by reel_api's model (defaults filled), then viewed."""
    from reel_api.models import Storage as StorageModel

    data = StorageModel.model_validate(fields).model_dump(mode="json", by_alias=True)
    return build_view(Storage, data, "storage")
