"""The API's own guards: a final phase cannot be moved by anyone (the CRD's transition rule on status.phase,
evaluated with cel-python as the apiserver would), and the prefix placeholders the API admits are exactly the
ones the recorder fills."""

from __future__ import annotations

import celpy
import pytest

from reel_api import crd
from reel_api.models import PHASE_IS_FINAL, PREFIX_PLACEHOLDERS
from reel_api.vocabulary import Phase

PHASE_SCHEMA = crd.openapi_schema()["properties"]["status"]["properties"]["phase"]


def _allowed(old: str, new: str) -> bool:
    [rule] = PHASE_SCHEMA["x-kubernetes-validations"]
    env = celpy.Environment()
    result = env.program(env.compile(rule["rule"])).evaluate({"self": celpy.json_to_cel(new),
                                                              "oldSelf": celpy.json_to_cel(old)})
    return bool(result)


@pytest.mark.parametrize("old", list(Phase))
@pytest.mark.parametrize("new", list(Phase))
def test_a_final_phase_is_final_but_backed_up_may_become_completed(old, new):
    final = old in (Phase.COMPLETED, Phase.BACKED_UP, Phase.FAILED)
    expected = not final or new == old or (old, new) == (Phase.BACKED_UP, Phase.COMPLETED)
    assert _allowed(old.value, new.value) == expected, (old, new)
    assert PHASE_IS_FINAL.check_transition(old, new) == expected  # the Python side says the same


def test_prefix_placeholders_are_the_recorders():
    from reel_recorder.layout import PLACEHOLDERS

    assert set(PREFIX_PLACEHOLDERS) == PLACEHOLDERS
