"""The operator's side of the backfill: the Job builder (jobspec.py), the BackedUp -> Completed transition
(status.py) and the handler (handlers/backfill.py) against the in-memory API of test_operator_handlers."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import kopf
import pytest
from tests.support.fake_kube import FakeKube

from reel_api import load_session
from reel_api.vocabulary import ConditionReason, FailureReason, Phase, StopReason
from reel_operator import jobspec, podspec
from reel_operator import status as st
from reel_operator.handlers import backfill, common
from reel_operator.settings import Settings

MANIFEST = "2026-11-25/1234_r1/manifest.json"
BACKUP = {"bucket": "rec-backup", "endpoint": "http://minio-b:9000", "credentialsSecretRef": {"name": "s3-b"}}


class JobKube(FakeKube):
    def get_job(self, ns, name):
        job = self.objects.get(("Job", ns, name))
        return copy.deepcopy(job) if job else None

    def delete_job(self, ns, name, uid=None):
        return self.objects.pop(("Job", ns, name), None) is not None

    def job_pods(self, ns, name):
        return copy.deepcopy(self.objects.get(("JobPods", ns, name), {}).get("items", []))


@pytest.fixture
def ctx(monkeypatch):
    posted = []
    monkeypatch.setattr(kopf, "event", lambda obj, type, reason, message: posted.append((type, reason, message)))
    c = common.Context(kube=JobKube(), settings=Settings())
    c.posted = posted
    return c


def backed_up(ctx, name="a", **backup):
    ctx.kube.add_session(name, storage={"bucket": "rec", "credentialsSecretRef": {"name": "s3"}},
                         backupStorage={**BACKUP, **backup})
    s = ctx.kube.sessions[("media", name)]
    s["status"] = {"phase": Phase.BACKED_UP, "stopReason": StopReason.REQUESTED, "manifest": MANIFEST,
                   "message": "6 of 8 segment(s) only in backup store", "upload": {"segments": 8, "location": "mixed"}}
    return ctx.kube.get_session("media", name)


def finish_job(ctx, name, *, ok: bool, summary: dict, at="2026-11-25T10:00:00Z"):
    job = ctx.kube.objects[("Job", "media", f"reel-backfill-{name}")]
    job["status"] = {"conditions": [{"type": "Complete" if ok else "Failed", "status": "True",
                                     "lastTransitionTime": at}]}
    ctx.kube.objects[("JobPods", "media", f"reel-backfill-{name}")] = {"items": [{"status": {"containerStatuses": [
        {"name": "backfill", "state": {"terminated": {"exitCode": 0 if ok else 2, "finishedAt": at,
                                                      "message": json.dumps(summary)}}}]}}]}


def cond(ctx, name, ctype):
    return next(c for c in ctx.kube.sessions[("media", name)]["status"]["conditions"] if c["type"] == ctype)


def test_the_job_reads_the_stores_as_the_recorder_pod_does_and_needs_no_api_access():
    body = {"apiVersion": "reel.dev/v1alpha1", "kind": "RecordingSession",
            "metadata": {"name": "a", "namespace": "media", "uid": "uid-a", "generation": 1},
            "spec": {"room": {"server": "ws://janus:8188", "id": 1},
                     "storage": {"bucket": "rec", "credentialsSecretRef": {"name": "s3"}},
                     "backupStorage": BACKUP}}
    session, settings = load_session(body), Settings()
    now = st.now_utc()
    job = jobspec.build_backfill_job(session, settings, manifest=MANIFEST, until=now + timedelta(seconds=600), now=now)
    pod = podspec.build_pod(session, settings)
    spec, tpl = job["spec"], job["spec"]["template"]["spec"]
    (c,) = tpl["containers"]
    assert job["metadata"]["name"] == "reel-backfill-a"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-a"  # deleted with the session
    assert c["command"] == ["reel-recorder"] and c["args"][:3] == ["backfill", "--manifest", MANIFEST]
    assert c["image"] == pod["spec"]["containers"][0]["image"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["REEL_SESSION"] == podspec.session_manifest(session)
    # the same Secret volumes and flags as the recorder pod
    secret_volumes = [v for v in tpl["volumes"] if "secret" in v]
    assert secret_volumes == [v for v in pod["spec"]["volumes"] if "secret" in v and "storage" in v["name"]]
    for flag in ("--storage-secrets", "--backup-storage-secrets"):
        i = c["args"].index(flag)
        assert c["args"][i + 1] in [m["mountPath"] for m in c["volumeMounts"]]
    assert tpl["automountServiceAccountToken"] is False and "serviceAccountName" not in tpl
    assert tpl["restartPolicy"] == "Never" and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["limits"]["memory"] == "256Mi"  # copies stream: small and fixed
    assert 600 <= spec["activeDeadlineSeconds"] <= 600 + jobspec.DEADLINE_GRACE_SECONDS
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [1, 2]
    assert "app.kubernetes.io/managed-by" not in job["spec"]["template"]["metadata"]["labels"]  # not a recorder pod


def test_backed_up_becomes_completed_only_through_a_completed_backfill():
    status = {"phase": Phase.BACKED_UP, "conditions": []}
    now = st.now_utc()
    assert not st.may_advance(Phase.BACKED_UP, Phase.COMPLETED)
    assert st.status_patch(status, {"phase": Phase.COMPLETED}, generation=1, now=now).get("phase") is None
    patch = st.status_patch(status, {"phase": Phase.COMPLETED, "backfill": {"completedAt": "2026-11-25T10:00:00Z",
                                                                            "message": "8 object(s)"}},
                            generation=1, now=now)
    assert patch["phase"] == Phase.COMPLETED
    conds = {c["type"]: c for c in patch["conditions"]}
    assert conds["BackedUp"]["status"] == "True" and conds["BackedUp"]["reason"] == ConditionReason.BACKUP_MOVED
    assert conds["Uploaded"]["status"] == "True" and conds["Ready"]["reason"] == Phase.COMPLETED
    assert not st.may_advance(Phase.COMPLETED, Phase.BACKED_UP, backfilled=True)
    assert not st.may_advance(Phase.FAILED, Phase.COMPLETED, backfilled=True)


def test_a_backed_up_session_is_backfilled_and_completed(ctx):
    body = backed_up(ctx)
    backfill.check(ctx, body)
    job = ctx.kube.objects[("Job", "media", "reel-backfill-a")]
    s = ctx.kube.sessions[("media", "a")]["status"]
    assert s["backfill"]["job"] == "reel-backfill-a" and s["backfill"]["attempts"] == 1
    assert cond(ctx, "a", "BackedUp")["reason"] == ConditionReason.BACKFILLING
    assert ("Normal", ConditionReason.BACKFILLING) in [(t, r) for t, r, _ in ctx.posted]
    assert "--until" in job["spec"]["template"]["spec"]["containers"][0]["args"]
    backfill.check(ctx, ctx.kube.get_session("media", "a"))  # running: nothing changes
    assert len([k for k in ctx.kube.objects if k[0] == "Job"]) == 1
    finish_job(ctx, "a", ok=True, summary={"phase": "Completed", "completedAt": "2026-11-25T10:05:00Z",
                                          "message": "6 of 8 object(s) copied", "objects": 6, "bytes": 600,
                                          "backupDeleted": True})
    backfill.check(ctx, ctx.kube.get_session("media", "a"))
    s = ctx.kube.sessions[("media", "a")]["status"]
    assert s["phase"] == Phase.COMPLETED and s["stopReason"] == StopReason.REQUESTED
    assert s["backfill"]["completedAt"] == "2026-11-25T10:05:00Z" and s["backfill"]["backupDeleted"] is True
    assert s["message"].startswith("backfilled at 2026-11-25T10:05:00Z")
    assert cond(ctx, "a", "BackedUp")["reason"] == ConditionReason.BACKUP_MOVED
    assert cond(ctx, "a", "Uploaded")["status"] == "True"
    assert ("Job", "media", "reel-backfill-a") not in ctx.kube.objects
    assert not backfill.wanted(s)


def test_an_integrity_mismatch_gives_up_at_once_leaving_backed_up(ctx):
    backfill.check(ctx, backed_up(ctx))
    finish_job(ctx, "a", ok=False, summary={"phase": "BackedUp", "reason": "IntegrityMismatch",
                                           "message": "the copy of x/seg_00002.ts in backup store differs"})
    backfill.check(ctx, ctx.kube.get_session("media", "a"))
    s = ctx.kube.sessions[("media", "a")]["status"]
    assert s["phase"] == Phase.BACKED_UP and s["backfill"]["reason"] == FailureReason.INTEGRITY_MISMATCH
    assert "seg_00002.ts" in s["backfill"]["message"] and "intact" in s["backfill"]["message"]
    assert cond(ctx, "a", "BackedUp")["reason"] == FailureReason.INTEGRITY_MISMATCH
    assert ("Warning", FailureReason.INTEGRITY_MISMATCH) in [(t, r) for t, r, _ in ctx.posted]
    assert not backfill.wanted(s)


def test_after_the_timeout_it_gives_up_with_backfill_timeout(ctx):
    backfill.check(ctx, backed_up(ctx, backfillTimeoutSeconds=60))
    s = ctx.kube.sessions[("media", "a")]["status"]
    s["backfill"]["startedAt"] = st.rfc3339(st.now_utc() - timedelta(seconds=200))  # the Job ran out of time
    finish_job(ctx, "a", ok=False, summary={"phase": "BackedUp", "reason": "BackfillTimeout",
                                           "message": "gave up after 5 attempt(s): cannot connect"})
    backfill.check(ctx, ctx.kube.get_session("media", "a"))
    s = ctx.kube.sessions[("media", "a")]["status"]
    assert s["phase"] == Phase.BACKED_UP and s["backfill"]["reason"] == FailureReason.BACKFILL_TIMEOUT
    assert "cannot connect" in s["backfill"]["message"] and s["backfill"]["gaveUpAt"]


def test_a_job_whose_pods_crashed_is_started_again_before_the_deadline(ctx):
    backfill.check(ctx, backed_up(ctx))
    finish_job(ctx, "a", ok=False, summary={}, at=st.rfc3339(st.now_utc() - timedelta(seconds=120)))
    backfill.check(ctx, ctx.kube.get_session("media", "a"))  # the failed Job goes
    assert ("Job", "media", "reel-backfill-a") not in ctx.kube.objects
    backfill.check(ctx, ctx.kube.get_session("media", "a"))  # the next one comes
    assert ctx.kube.sessions[("media", "a")]["status"]["backfill"]["attempts"] == 2
    assert ctx.kube.objects[("Job", "media", "reel-backfill-a")]["metadata"]["annotations"][
        "reel.dev/backfill-attempt"] == "2"


def test_a_local_store_on_an_empty_dir_cannot_be_backfilled(ctx):
    ctx.kube.add_session("l", storage={"local": {"path": "/data"}}, backupStorage={"local": {"path": "/backup"}})
    ctx.kube.sessions[("media", "l")]["status"] = {"phase": Phase.BACKED_UP, "manifest": MANIFEST}
    backfill.check(ctx, ctx.kube.get_session("media", "l"))
    s = ctx.kube.sessions[("media", "l")]["status"]
    assert s["backfill"]["reason"] == FailureReason.BACKFILL_FAILED and not any(
        k[0] == "Job" for k in ctx.kube.objects)
