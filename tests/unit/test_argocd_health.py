"""The Argo CD health check (charts/reel/argocd/health.lua), run by a real Lua interpreter against sessions in
every phase. Argo CD runs health scripts in gopher-lua (Lua 5.1): hack/deps.sh installs Debian's lua5.1.

The objects' conditions are the operator's own (status.desired_conditions), so the script is tested against what
the operator writes, not against a hand-written guess of it.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reel_api import ConditionType, FailureReason, Phase
from reel_operator import status as st

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "charts" / "reel" / "argocd" / "health.lua"
LUA = next((shutil.which(n) for n in ("lua5.1", "lua5.4", "lua5.3", "lua") if shutil.which(n)), None)

pytestmark = pytest.mark.skipif(LUA is None and not os.environ.get("CI"),
                                reason="no Lua interpreter: ./hack/deps.sh installs lua5.1")


def lua_value(value) -> str:
    """A JSON-like value as a Lua literal (what Argo CD hands the script: the object as nested tables)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua escapes for these texts
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_value(v)}" for k, v in value.items()) + "}"


def health(obj) -> tuple[str, str]:
    program = (f"obj = {lua_value(obj)}\n"
               f"local hs = assert(loadfile({json.dumps(str(SCRIPT))}))()\n"
               'io.write(hs.status, "\\n", hs.message or "")\n')
    out = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, timeout=30, check=True).stdout
    status, _, message = out.partition("\n")
    return status, message


def session(status=None, generation=1):
    obj = {"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
           "metadata": {"name": "standup", "namespace": "media", "generation": generation}, "spec": {}}
    if status is not None:
        status = dict(status, observedGeneration=status.get("observedGeneration", 1))
        status["conditions"] = st.merge_conditions([], st.desired_conditions(status), generation=1, now=st.now_utc())
        obj["status"] = status
    return obj


BACKED_UP = {"phase": Phase.BACKED_UP, "stopReason": "Requested", "upload": {"location": "mixed"}}
CASES = {
    "no status yet": (None, "Progressing", "starting"),
    "Pending": ({"phase": Phase.PENDING}, "Progressing", "starting"),
    "Starting": ({"phase": Phase.STARTING}, "Progressing", "starting"),
    "Recording": ({"phase": Phase.RECORDING, "recordingId": "r1", "activeParticipants": 2}, "Healthy", "recording r1"),
    "Recording, someone skipped": ({"phase": Phase.RECORDING, "participants": [
        {"id": 7, "display": "judy", "skipped": [{"kind": "video", "codec": "VP8", "reason": "CodecUnsupported"}]}]},
        "Healthy", "ParticipantSkipped"),
    "Recording, recorder lost": ({"phase": Phase.RECORDING, "interruption": {
        "since": "2026-01-01T00:00:00Z", "reason": "Evicted", "message": "evicted; restart 1 of 3"}},
        "Progressing", "Interrupted: evicted"),
    "Recording, reconnecting": ({"phase": Phase.RECORDING, "room": {"state": "Reconnecting", "message": "refused"}},
                                "Progressing", "Reconnecting"),
    "Paused": ({"phase": Phase.PAUSED}, "Suspended", "paused"),
    "Paused, reconnecting": ({"phase": Phase.PAUSED, "room": {"state": "Reconnecting"}}, "Progressing", "Reconnecting"),
    "Stopping": ({"phase": Phase.STOPPING, "stopReason": "Requested"}, "Progressing", "Stopping (stop reason Req"),
    "Uploading": ({"phase": Phase.UPLOADING, "stopReason": "NoUsers"}, "Progressing", "Uploading (stop reason NoU"),
    "Completed": ({"phase": Phase.COMPLETED, "stopReason": "MaxDuration"}, "Healthy", "Completed (stop reason Max"),
    "Completed after a backfill": ({**BACKED_UP, "phase": Phase.COMPLETED, "backfill": {
        "completedAt": "2026-01-01T01:00:00Z", "message": "3 objects"}}, "Healthy", "Completed"),
    "BackedUp, before the backfill": (BACKED_UP, "Degraded", "only in the backup storage: BackupUsed"),
    "BackedUp, backfilling": ({**BACKED_UP, "backfill": {"job": "standup-backfill-1",
                                                         "startedAt": "2026-01-01T00:00:00Z"}},
                              "Degraded", "Backfilling: Job standup-backfill-1"),
    "BackedUp, backfill gave up": ({**BACKED_UP, "backfill": {"gaveUpAt": "2026-01-01T02:00:00Z", "reason":
                                   FailureReason.BACKFILL_TIMEOUT, "message": "primary still refuses"}},
                                   "Degraded", "BackfillTimeout: backfill gave up"),
    "Failed": ({"phase": Phase.FAILED, "stopReason": "Error", "message": "no room 1234 on ws://janus:8188",
                "conditions": [{"type": ConditionType.READY, "status": "False",
                                "reason": FailureReason.ROOM_NOT_FOUND}]},
               "Degraded", "RoomNotFound: no room 1234"),
}


@pytest.mark.parametrize("name", CASES)
def test_health_of_every_phase(name):
    status, want, message = CASES[name]
    got, said = health(session(status))
    assert got == want, said
    assert message in said


def test_every_phase_has_a_case():
    phases = {(c[0] or {}).get("phase") for c in CASES.values()}
    assert phases >= set(Phase)


def test_a_spec_edit_not_acted_on_yet_is_progressing_until_observed():
    recording = {"phase": Phase.RECORDING, "recordingId": "r1"}
    assert health(session(recording, generation=2))[0] == "Progressing"
    assert health(session(dict(recording, observedGeneration=2), generation=2))[0] == "Healthy"
    assert health(session({"phase": Phase.PAUSED}, generation=3))[0] == "Progressing"
    assert health(session({"phase": Phase.COMPLETED}, generation=3))[0] == "Healthy"  # nothing left to act on


def test_readme_carries_the_script_as_it_is():
    """README.md's argocd-cm snippet is the chart's script, indented: the two cannot drift apart."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"resource\.customizations\.health\.reel\.dev_RecordingSession: \|\n((?:    .*\n|\n)+)", readme)
    assert block, "README.md has no argocd-cm snippet"
    text = "\n".join(line[4:] for line in block.group(1).rstrip("\n").split("\n")) + "\n"
    assert text == SCRIPT.read_text()
