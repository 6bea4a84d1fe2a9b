"""Parametrising the recorder's integration tests over ``spec.recording.ingest`` (issue 17).

``INGESTS`` gives a test an ``ingest`` argument, ``{"ingest": "forward"}`` or ``{"ingest": "webrtc"}``, to merge
into ``spec.recording``: the same test, the same assertions, for both ways media reaches the recorder.
"""

from __future__ import annotations

import pytest

INGESTS = pytest.mark.parametrize("ingest", [{"ingest": "forward"}, {"ingest": "webrtc"}], ids=["forward", "webrtc"])
