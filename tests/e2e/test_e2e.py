"""Reel end to end on kind: the chart, a Janus room, WebRTC participants as pods, MinIO, RecordingSessions."""

from __future__ import annotations

import itertools
import threading
import time

from tests.support.analyze import audio_gaps, decode_segments, parse_playlist

from .kit import GROUP, PLURAL, VERSION, download, list_objects, manifest_of, session_spec, wait_for

TERMINAL = {"Completed", "BackedUp", "Failed"}
ORDER = ["Pending", "Starting", "Recording", "Stopping", "Uploading", "Completed"]


class PhaseWatch:
    """Every phase a session goes through, seen through a watch (not by polling)."""

    def __init__(self, kit, ns: str, name: str):
        from kubernetes import watch

        self.phases: list[str] = []
        self.error: Exception | None = None
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(kit, ns, name), daemon=True)
        self._thread.start()

    def _run(self, kit, ns, name):
        try:
            for event in self._watch.stream(kit.custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL,
                                            field_selector=f"metadata.name={name}", timeout_seconds=600):
                phase = ((event["object"].get("status") or {}).get("phase"))
                if phase and (not self.phases or self.phases[-1] != phase):
                    self.phases.append(phase)
        except Exception as err:  # the watch ends when stop() closes its connection
            self.error = err

    def stop(self):
        self._watch.stop()


def _check_recording(e, s3, status: dict, participants: int, tmp_path) -> dict:
    manifest = manifest_of(s3, e.bucket, status["manifest"])
    objects = list_objects(s3, e.bucket, manifest["prefix"])
    assert len(manifest["participants"]) == participants, manifest["participants"]
    for p in manifest["participants"]:
        playlist = parse_playlist(s3.get_object(Bucket=e.bucket, Key=p["playlist"])["Body"].read().decode())
        assert playlist.ended
        names = [s["name"] for s in p["segments"]]
        assert [u for u, _, _ in playlist.entries] == names
        keys = [s["key"] for s in p["segments"]]
        assert all(objects.get(k) == s["bytes"] for k, s in zip(keys, p["segments"], strict=True))
        paths = download(s3, e.bucket, keys, tmp_path / "dl")
        decoded = decode_segments(paths)
        total = sum(d for _, d, _ in playlist.entries)
        assert decoded.decode_errors == 0 and decoded.video_frames > 0
        # runs: the playlist restarts after each discontinuity (a pause); holes are allowed only between runs
        starts = [0] + [i for i, (_, _, disc) in enumerate(playlist.entries) if disc and i > 0]
        runs = [(decoded.segment_spans[a][0], decoded.segment_spans[b - 1][1])
                for a, b in itertools.pairwise([*starts, len(playlist.entries)])]
        span = sum(end - start for start, end in runs)  # first to last sample of each run, audio or video
        assert abs(total - span) < 0.3 * len(runs), (total, span)
        # video starts promptly (the recorder's keyframe request reached the publisher through Janus)
        assert decoded.video_times[0] - decoded.segment_spans[0][0] < 0.5, decoded.segment_spans[0]
        # audio covers each run without holes and ends with the video (a stop ends all streams at once)
        between = list(itertools.pairwise(runs))
        assert not [(at, length) for at, length in audio_gaps(decoded.audio_spans)
                    if not any(a[1] - 0.1 <= at and at + length <= b[0] + 0.1 for a, b in between)], runs
        assert abs(decoded.audio_spans[-1][1] - decoded.video_times[-1]) < 0.15, (decoded.audio_spans[-1],
                                                                                  decoded.video_times[-1])
        assert abs(decoded.audio_samples / 48000 - total) < 0.15, (decoded.audio_samples / 48000, total)
    return manifest


def _no_recorder_pod(kit, ns, name, timeout=120):
    wait_for(lambda: not kit.recorder_pods(ns, name), timeout, f"recorder pod of {name} gone")


def _record_alice_and_bob(env, name: str, spec: dict) -> str | None:
    """Session ``name`` of ``spec`` (room 1001) records alice and bob for 12 s; the recorder's VmRSS (kB) then,
    None when it could not be read."""
    kit, ns = env.kit, env.ns
    kit.create_session(ns, name, spec)
    pubs = [kit.start_publisher(ns, who, 1001) for who in ("alice", "bob")]
    for p in pubs:
        kit.wait_published(ns, p)
    wait_for(lambda: (kit.session(ns, name).get("status") or {}).get("activeParticipants") == 2, 120,
             "two participants recorded")
    time.sleep(12)
    pod = kit.recorder_pods(ns, name)[0].metadata.name
    proc = kit.kubectl("exec", "-n", ns, pod, "--", "cat", "/proc/1/status", check=False).stdout
    return next((line.split()[1] for line in proc.splitlines() if line.startswith("VmRSS:")), None)


def test_two_participants_stop_with_spec_stop(env, tmp_path):
    kit, ns = env.kit, env.ns
    watch = PhaseWatch(kit, ns, "standup")
    rss = _record_alice_and_bob(env, "standup", session_spec(env.server, 1001, endpoint=env.endpoint,
                                                             recording={"outputs": ["hls", "mp4"]}))
    t0 = time.monotonic()
    kit.stop_session(ns, "standup")
    obj = kit.wait_phase(ns, "standup", TERMINAL, 240)
    _no_recorder_pod(kit, ns, "standup")
    stop_to_gone = time.monotonic() - t0
    watch.stop()
    status = obj["status"]
    assert status["phase"] == "Completed" and status["stopReason"] == "Requested", status
    seen = [p for p in watch.phases if p in ORDER]
    assert seen == sorted(seen, key=ORDER.index), watch.phases
    assert {"Recording", "Completed"} <= set(seen), watch.phases
    assert status["upload"]["progress"] == 100 and status["upload"]["pendingSegments"] == 0
    with kit.s3(ns) as s3:
        manifest = _check_recording(env, s3, status, 2, tmp_path)
        for p in manifest["participants"]:  # outputs: mp4, uploaded at the end
            mp4 = p["mp4"]
            assert mp4["location"] == "primary" and list_objects(s3, env.bucket, mp4["key"]) == \
                {mp4["key"]: mp4["bytes"]}, p
            path, = download(s3, env.bucket, [mp4["key"]], tmp_path / "mp4")
            decoded = decode_segments([path])
            assert decoded.decode_errors == 0 and decoded.video_frames > 10 * 25, decoded.video_frames
    print(f"stop -> Completed and pod gone: {stop_to_gone:.1f} s; recorder RSS with 2 participants and S3: "
          f"{int(rss) / 1024:.1f} MiB" if rss else "(RSS not readable)")


def test_mode_both_stores_each_participant_and_the_composite(env, tmp_path):
    """spec.recording.mode both: both participants' playlists and the composite's, all stored in MinIO with
    matching checksums, all playable to the end; the composite's MP4 too."""
    import hashlib

    kit, ns = env.kit, env.ns
    kit.create_session(ns, "meeting", session_spec(
        env.server, 1009, endpoint=env.endpoint,
        recording={"mode": "both", "outputs": ["hls", "mp4"], "composite": {"width": 640, "height": 360}}))
    pubs = [kit.start_publisher(ns, f"meeting-{who}", 1009) for who in ("alice", "bob")]
    for p in pubs:
        kit.wait_published(ns, p)
    wait_for(lambda: (kit.session(ns, "meeting").get("status") or {}).get("activeParticipants") == 2, 120,
             "two participants recorded")
    time.sleep(12)
    pod = kit.recorder_pods(ns, "meeting")[0]
    assert pod.spec.containers[0].resources.limits["cpu"] == "2"  # the composite's own defaults (chart values)
    kit.stop_session(ns, "meeting")
    status = kit.wait_phase(ns, "meeting", TERMINAL, 240)["status"]
    assert status["phase"] == "Completed", status
    assert status["composite"]["frames"] > 12 * 15 and status["composite"]["droppedFrames"] == 0, status["composite"]
    with kit.s3(ns) as s3:
        manifest = _check_recording(env, s3, status, 2, tmp_path)
        composite = manifest["composite"]
        assert status["composite"]["playlist"] == composite["playlist"] and composite["playlist"] in status["playlists"]
        playlist = parse_playlist(s3.get_object(Bucket=env.bucket, Key=composite["playlist"])["Body"].read().decode())
        assert playlist.ended and [u for u, _, _ in playlist.entries] == [s["name"] for s in composite["segments"]]
        keys = [s["key"] for s in composite["segments"]] + [composite["mp4"]["key"]]
        paths = download(s3, env.bucket, keys, tmp_path / "composite")
        for path, s in zip(paths, [*composite["segments"], composite["mp4"]], strict=True):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == s["sha256"] and s["location"] == "primary"
        hls, mp4 = decode_segments(paths[:-1]), decode_segments(paths[-1:])
        total = sum(d for _, d, _ in playlist.entries)
        assert hls.decode_errors == 0 and hls.sizes == {(640, 360)} and abs(hls.video_frames / 15 - total) < 1.0
        assert mp4.decode_errors == 0 and abs(mp4.video_frames - hls.video_frames) <= 2
        assert abs(hls.audio_samples / 48000 - total) < 0.3, (hls.audio_samples / 48000, total)
    print(f"mode both: composite {total:.1f} s, {status['composite']['frames']} frames, "
          f"{status['composite']['droppedFrames']} dropped")


def test_pause_and_resume_with_spec_paused(env, tmp_path):
    kit, ns = env.kit, env.ns
    kit.create_session(ns, "paused", session_spec(env.server, 1005, endpoint=env.endpoint,
                                                  recording={"maxIdleSeconds": 5}))
    pub = kit.start_publisher(ns, "frank", 1005)
    kit.wait_published(ns, pub)
    wait_for(lambda: (kit.session(ns, "paused").get("status") or {}).get("activeParticipants") == 1, 120,
             "participant recorded")
    time.sleep(4)
    t0 = time.monotonic()
    kit.set_paused(ns, "paused", True)
    kit.wait_phase(ns, "paused", {"Paused"}, 30)
    pause_latency = time.monotonic() - t0

    def recording_condition():
        conditions = kit.session(ns, "paused")["status"].get("conditions") or []
        return next(((c["status"], c["reason"]) for c in conditions if c["type"] == "Recording"), None)
    # the recorder reports the phase; the operator derives the conditions from it (a moment later)
    wait_for(lambda: recording_condition() == ("False", "Paused"), 30, "condition Recording False/Paused")
    wait_for(lambda: kit.session(ns, "paused")["status"].get("activeParticipants") == 0, 30, "ingest stopped")
    time.sleep(7)  # longer than maxIdleSeconds: the participant is still there, so the session goes on
    assert kit.phase(ns, "paused") == "Paused"
    kit.set_paused(ns, "paused", False)
    wait_for(lambda: (kit.session(ns, "paused")["status"].get("phase"),
                      kit.session(ns, "paused")["status"].get("activeParticipants")) == ("Recording", 1), 30,
             "recording again")
    time.sleep(4)
    kit.stop_session(ns, "paused")
    obj = kit.wait_phase(ns, "paused", TERMINAL, 240)
    assert obj["status"]["phase"] == "Completed" and obj["status"]["stopReason"] == "Requested", obj["status"]
    events = kit.core.list_namespaced_event(ns, field_selector="involvedObject.name=paused").items
    assert "Paused" in {e.reason for e in events}, [(e.reason, e.message) for e in events]
    with kit.s3(ns) as s3:
        manifest = _check_recording(env, s3, obj["status"], 1, tmp_path)
    assert len(manifest["pauses"]) == 1 and manifest["pauses"][0]["resumedAt"], manifest["pauses"]
    segments = manifest["participants"][0]["segments"]
    assert sum(1 for s in segments if s["discontinuity"]) == 1, segments
    print(f"spec.paused: true -> phase Paused: {pause_latency:.1f} s")


def test_kubectl_wait_ready_returns_once_recording_and_finished_at_the_end(env):
    """What a GitOps pipeline waits on (issue 20): `kubectl wait --for=condition=Ready` returns once the session
    records (not when it ends), `--for=condition=Finished` once it has ended."""
    kit, ns = env.kit, env.ns
    t0 = time.monotonic()
    kit.create_session(ns, "waited", session_spec(env.server, 1009, endpoint=env.endpoint))
    pub = kit.start_publisher(ns, "gina", 1009, None, "--no-video")
    kit.kubectl("wait", "-n", ns, "recs/waited", "--for=condition=Ready", "--timeout=180s", timeout=200)
    ready_after = time.monotonic() - t0
    status = kit.session(ns, "waited")["status"]
    assert status["phase"] == "Recording", status  # Ready while recording, not at the end
    finished = kit.kubectl("wait", "-n", ns, "recs/waited", "--for=condition=Finished", "--timeout=2s",
                           check=False, timeout=30)
    assert finished.returncode != 0  # not finished yet
    kit.wait_published(ns, pub)
    kit.stop_session(ns, "waited")
    kit.kubectl("wait", "-n", ns, "recs/waited", "--for=condition=Finished", "--timeout=240s", timeout=260)
    status = kit.session(ns, "waited")["status"]
    assert status["phase"] == "Completed", status
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Finished"]["status"] == "True" and conditions["Reconciling"]["status"] == "False"
    assert all(c.get("observedGeneration") == status["observedGeneration"] for c in status["conditions"])
    print(f"kubectl wait --for=condition=Ready returned {ready_after:.1f} s after the session was created")


def test_empty_room_ends_no_users(env):
    kit, ns = env.kit, env.ns
    kit.create_session(ns, "empty", session_spec(env.server, 1002, endpoint=env.endpoint,
                                                 recording={"maxIdleSeconds": 5}))
    obj = kit.wait_phase(ns, "empty", TERMINAL, 180)
    assert obj["status"]["phase"] == "Completed" and obj["status"]["stopReason"] == "NoUsers", obj["status"]
    _no_recorder_pod(kit, ns, "empty")


def test_delete_mid_recording_finishes_and_stores(env, tmp_path):
    kit, ns = env.kit, env.ns
    kit.create_session(ns, "deleted", session_spec(env.server, 1003, endpoint=env.endpoint))
    pub = kit.start_publisher(ns, "carol", 1003)
    kit.wait_published(ns, pub)
    wait_for(lambda: (kit.session(ns, "deleted").get("status") or {}).get("activeParticipants") == 1, 120,
             "participant recorded")
    time.sleep(8)
    kit.delete_session(ns, "deleted")
    wait_for(lambda: kit.session(ns, "deleted") is None, 240, "session gone (finalizer done)")
    _no_recorder_pod(kit, ns, "deleted")
    with kit.s3(ns) as s3:
        keys = list_objects(s3, env.bucket)
        manifests = [k for k in keys if k.endswith("manifest.json")]
        assert len(manifests) == 1, keys
        manifest = manifest_of(s3, env.bucket, manifests[0])
        assert manifest["stoppedAt"] and manifest["participants"][0]["segments"]
        for seg in manifest["participants"][0]["segments"]:
            assert keys.get(seg["key"]) == seg["bytes"]


def test_primary_store_down_ends_backed_up(env):
    kit, ns = env.kit, env.ns
    # the primary is a Service without pods: every upload to it fails
    kit.apply(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s3-down"},
                   "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 9000}]}})
    kit.create_bucket(ns, "backup")
    backup = {"bucket": "backup", "endpoint": env.endpoint, "credentialsSecretRef": {"name": "s3"}}
    spec = session_spec(env.server, 1004, endpoint=f"http://s3-down.{ns}.svc.cluster.local:9000", backup=backup)
    kit.create_session(ns, "failover", spec)
    pub = kit.start_publisher(ns, "dave", 1004, None, "--no-video")
    kit.wait_published(ns, pub)
    wait_for(lambda: (kit.session(ns, "failover").get("status") or {}).get("upload", {}).get("location")
             == "backup", 180, "segments stored in the backup")
    kit.stop_session(ns, "failover")
    obj = kit.wait_phase(ns, "failover", TERMINAL, 600)
    assert obj["status"]["phase"] == "BackedUp", obj["status"]
    with kit.s3(ns) as s3:
        manifest = manifest_of(s3, "backup", obj["status"]["manifest"])
        segments = manifest["participants"][0]["segments"]
        assert segments and all(s["location"] == "backup" for s in segments)
    _no_recorder_pod(kit, ns, "failover")


def test_primary_down_until_after_the_stop_is_backfilled_then_completed(env):
    """MinIO primary unreachable from mid-recording until after the stop: BackedUp, then the backfill Job copies
    the backup into the primary (verified), the backup is emptied and the session becomes Completed."""
    kit, ns = env.kit, env.ns
    primary = kit.deploy_minio(ns, "minio-p")
    kit.wait_deployment(ns, "minio-p")
    kit.create_bucket(ns, "primary", name="minio-p")
    kit.create_bucket(ns, "backup")

    def freeze_primary(sig: str) -> None:
        """An outage that keeps what the primary holds: its MinIO frozen (SIGSTOP: open connections hang, its
        readiness probe fails, new ones find no endpoint), then thawed (SIGCONT)."""
        pod = kit.kubectl("get", "pods", "-n", ns, "-l", "app=minio-p", "-o", "jsonpath={.items[0].metadata.name}"
                          ).stdout.strip()
        kit.signal_container(ns, pod, "minio-p", sig)

    backup = {"bucket": "backup", "endpoint": env.endpoint, "credentialsSecretRef": {"name": "s3"},
              "backfillTimeoutSeconds": 600}
    kit.create_session(ns, "backfill", session_spec(env.server, 1008, bucket="primary", endpoint=primary,
                                                    backup=backup))
    pub = kit.start_publisher(ns, "erin", 1008, None, "--no-video")
    kit.wait_published(ns, pub)
    upload = lambda: (kit.session(ns, "backfill").get("status") or {}).get("upload") or {}  # noqa: E731
    wait_for(lambda: upload().get("location") == "primary" and upload().get("segments", 0) >= 2, 180,
             "segments in the primary")
    freeze_primary("STOP")
    wait_for(lambda: upload().get("location") == "mixed", 240, "segments stored in the backup")
    kit.stop_session(ns, "backfill")
    obj = kit.wait_phase(ns, "backfill", TERMINAL, 600)
    assert obj["status"]["phase"] == "BackedUp", obj["status"]
    wait_for(lambda: (kit.session(ns, "backfill")["status"].get("backfill") or {}).get("job"), 60, "backfill Job")
    time.sleep(10)  # the Job retries against the unreachable primary meanwhile
    t0 = time.monotonic()
    freeze_primary("CONT")
    obj = kit.wait_phase(ns, "backfill", {"Completed"}, 300)
    print(f"\nbackfill: primary back -> Completed in {time.monotonic() - t0:.1f} s; {obj['status']['backfill']}")
    status = obj["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["BackedUp"]["status"] == "True" and conditions["BackedUp"]["reason"] == "BackupMoved"
    assert conditions["Uploaded"]["status"] == "True" and status["backfill"]["completedAt"]
    assert status["backfill"]["objects"] > 0 and status["backfill"]["backupDeleted"] is True
    with kit.s3(ns, "minio-p") as s3:
        manifest = manifest_of(s3, "primary", status["manifest"])
        objects = list_objects(s3, "primary", manifest["prefix"])
        segments = manifest["participants"][0]["segments"]
        assert segments and all(s["location"] == "primary" and objects.get(s["key"]) == s["bytes"] for s in segments)
        playlist = s3.get_object(Bucket="primary", Key=manifest["participants"][0]["playlist"])["Body"].read()
        assert playlist.decode().count("seg_") == len(segments) and b"#EXT-X-ENDLIST" in playlist
    with kit.s3(ns) as s3:
        assert list_objects(s3, "backup", manifest["prefix"]) == {}
    wait_for(lambda: not kit.kubectl("get", "jobs", "-n", ns, "-o", "name").stdout.strip(), 60, "backfill Job gone")


def test_three_sessions_at_once_and_already_recording(env, tmp_path):
    kit, ns = env.kit, env.ns
    rooms = {"r1": 1001, "r2": 1002, "r3": 1003}
    for name, room in rooms.items():
        kit.create_session(ns, name, session_spec(env.server, room, endpoint=env.endpoint,
                                                  prefix=f"{name}/{{recordingId}}/"))
        kit.start_publisher(ns, f"p{room}", room, None, "--no-video")
    for name in rooms:
        wait_for(lambda n=name: (kit.session(ns, n).get("status") or {}).get("activeParticipants") == 1, 180,
                 f"{name} recording its participant")
    # a second session for a busy room ends at once and touches nothing
    kit.create_session(ns, "dup", session_spec(env.server, 1001, endpoint=env.endpoint, prefix="dup/"))
    dup = kit.wait_phase(ns, "dup", TERMINAL, 120)
    assert dup["status"]["stopReason"] == "AlreadyRecording", dup["status"]
    assert not kit.recorder_pods(ns, "dup")
    # what a user scans: kubectl get recs
    table = kit.kubectl("get", "recs", "-n", ns).stdout
    header = table.splitlines()[0].split()
    assert header[:7] == ["NAME", "ROOM", "PHASE", "PARTICIPANTS", "PROGRESS", "REASON", "AGE"], table
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["r1"][1:4] == ["1001", "Recording", "1"], table
    assert "AlreadyRecording" in rows["dup"], table
    for name in rooms:
        kit.stop_session(ns, name)
    for name in rooms:
        obj = kit.wait_phase(ns, name, TERMINAL, 240)
        assert obj["status"]["phase"] == "Completed", obj["status"]
    with kit.s3(ns) as s3:
        keys = list_objects(s3, env.bucket)
        assert not any(k.startswith("dup/") for k in keys)
        for name in rooms:
            assert any(k.startswith(f"{name}/") and k.endswith("manifest.json") for k in keys), keys


def _resumed_after(kit, ns: str, name: str, room: int, fault, env, *, restarts: int = 1,
                   recording: dict | None = None) -> tuple[dict, float]:
    """Record ``name`` with one participant, apply ``fault`` to its recorder pod mid-recording, wait for the
    replacement to record again, stop; returns the final status and the seconds from the fault to recording."""
    kit.create_session(ns, name, session_spec(env.server, room, endpoint=env.endpoint,
                                              recording={"maxIdleSeconds": 60, "segmentSeconds": 2,
                                                         **(recording or {})}))
    pub = kit.start_publisher(ns, f"{name}-p", room, 70)
    kit.wait_published(ns, pub)
    wait_for(lambda: (kit.session(ns, name).get("status") or {}).get("activeParticipants") == 1, 120,
             "participant recorded")
    time.sleep(10)
    first_pod = kit.recorder_pods(ns, name)[0].metadata.name
    first_uid = kit.recorder_pods(ns, name)[0].metadata.uid
    t0 = time.monotonic()
    fault(first_pod)

    def recording_again():
        st = kit.session(ns, name).get("status") or {}
        pods = kit.recorder_pods(ns, name)
        return (st.get("restarts") == restarts and not st.get("interruption") and st.get("phase") == "Recording"
                and st.get("activeParticipants") == 1 and pods and pods[0].metadata.uid != first_uid)
    wait_for(recording_again, 180, "the replacement recorder records again")
    gap = time.monotonic() - t0
    time.sleep(8)
    kit.stop_session(ns, name)
    obj = kit.wait_phase(ns, name, TERMINAL, 240)
    return obj, gap


def _check_resumed(env, status: dict, tmp_path, reason: str | set[str], *, fault: str, gap: float) -> dict:
    """The resumed recording is whole but for one gap; prints the figures of the fault. ``reason``: the
    interruption reason, or the set of those that may be true (the print says which one it was)."""
    assert status["phase"] == "Completed" and status["stopReason"] == "Requested", status
    with env.kit.s3(env.ns) as s3:
        manifest = _check_recording(env, s3, status, 1, tmp_path)
        [interruption] = manifest["interruptions"]
        assert interruption["reason"] in ({reason} if isinstance(reason, str) else reason), interruption
        [p] = manifest["participants"]
        discontinuities = [s for s in p["segments"] if s["discontinuity"]]
        assert len(discontinuities) == 1, p["segments"]  # the lost recorder: one gap, numbering goes on
        numbers = [int(s["name"][4:9]) for s in p["segments"]]
        assert numbers == sorted(set(numbers))
        # the hole in the media: from the end of the last segment stored before the loss to the first after it
        i = p["segments"].index(discontinuities[0])
        before, after = p["segments"][i - 1], p["segments"][i]
        interruption["mediaGap"] = after["start"] - (before["start"] + before["duration"])
        assert 0 < interruption["mediaGap"] < 60, interruption
    print(f"{fault} ({interruption['reason']}): recording again {gap:.1f} s later, "
          f"{len(interruption['lostSegments'])} segment(s) lost, {interruption['mediaGap']:.1f} s of media missing")
    return interruption


def test_a_force_deleted_recorder_pod_is_replaced_and_the_recording_continues(env, tmp_path):
    kit, ns = env.kit, env.ns
    obj, gap = _resumed_after(kit, ns, "forced", 1007, lambda pod: kit.kubectl(
        "delete", "pod", "-n", ns, pod, "--grace-period=0", "--force", "--wait=false"), env)
    _check_resumed(env, obj["status"], tmp_path, "PodDeleted", fault="force delete", gap=gap)


def test_a_killed_recorder_container_is_replaced_and_the_recording_continues(env, tmp_path):
    kit, ns = env.kit, env.ns
    obj, gap = _resumed_after(kit, ns, "killed", 1003, lambda pod: kit.signal_container(ns, pod, "recorder", "KILL"),
                              env)
    _check_resumed(env, obj["status"], tmp_path, "RecorderCrashed", fault="container SIGKILL", gap=gap)


def _liveness_failures(kit, ns: str, pod: str) -> dict[str, int]:
    """Failed liveness probes of the pods named ``pod`` (a replacement has the same name), by pod uid, from the
    kubelet's Unhealthy Events."""
    events = kit.core.list_namespaced_event(
        ns, field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}").items
    failures: dict[str, int] = {}
    for e in events:
        if e.reason == "Unhealthy" and (e.message or "").startswith("Liveness probe failed"):
            failures[e.involved_object.uid] = failures.get(e.involved_object.uid, 0) + (e.count or 1)
    return failures


def test_a_frozen_recorder_is_replaced_after_the_silence_timeout(env, tmp_path):
    """SIGSTOP: the recorder stops reporting and its liveness endpoint stops answering; two mechanisms notice.
    The operator's silence check (recorderSilenceSeconds 15, a 10 s timer, heartbeats every 5 s) replaces it at
    most ~30 s later: RecorderSilent. The kubelet's liveness probe fails after ~20-32 s, but with restartPolicy
    Never its kill is a SIGTERM, which a frozen process never acts on, and a SIGKILL only after the pod's
    terminationGracePeriodSeconds: the pod ends that way (RecorderUnresponsive) only when that comes first. The
    test expects what these settings allow and prints which one fired; the replacement's probe never fails."""
    kit, ns = env.kit, env.ns
    silence = 15
    frozen = {}

    def freeze(pod):
        frozen["pod"] = kit.core.read_namespaced_pod(pod, ns)
        kit.signal_container(ns, pod, "recorder", "STOP")

    obj, gap = _resumed_after(kit, ns, "frozen", 1004, freeze, env, recording={"recorderSilenceSeconds": silence})
    pod = frozen["pod"]
    probe = pod.spec.containers[0].liveness_probe
    assert probe.http_get.path == "/healthz" and probe.failure_threshold == 3, probe
    # the latest the silence check replaces it: the silence, a heartbeat interval (5 s), the timer (10 s), slack
    silence_latest = silence + 5 + 10 + 10
    # the earliest a liveness kill ends the pod: the last of the failed probes, then the grace period
    liveness_earliest = (probe.failure_threshold - 1) * probe.period_seconds + pod.spec.termination_grace_period_seconds
    expected = {"RecorderSilent"} if liveness_earliest > silence_latest else {"RecorderSilent", "RecorderUnresponsive"}
    interruption = _check_resumed(env, obj["status"], tmp_path, expected, gap=gap,
                                  fault=f"SIGSTOP, recorderSilenceSeconds {silence}")
    failures = _liveness_failures(kit, ns, pod.metadata.name)
    frozen_failures = failures.pop(pod.metadata.uid, 0)
    print(f"SIGSTOP: {interruption['reason']} fired; the kubelet's liveness probe of the frozen recorder failed "
          f"{frozen_failures} time(s) before it was replaced")
    if interruption["reason"] == "RecorderUnresponsive":
        assert frozen_failures >= probe.failure_threshold, failures
    assert not failures, f"the liveness probe of a healthy replacement failed: {failures}"


def test_an_evicted_recorder_is_replaced_and_the_recording_continues(env, tmp_path):
    from kubernetes import client

    kit, ns = env.kit, env.ns

    def evict(pod):
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=ns))
        kit.core.create_namespaced_pod_eviction(pod, ns, body)

    obj, gap = _resumed_after(kit, ns, "evicted", 1008, evict, env)
    _check_resumed(env, obj["status"], tmp_path, "Evicted", fault="eviction", gap=gap)


def test_a_recorder_that_keeps_running_out_of_memory_ends_failed_after_max_restarts(env):
    """An OOM kill is an interruption (replaced), but not forever: after spec.recording.maxRestarts replacements
    the next loss ends the session Failed/TooManyRestarts, naming the cause."""
    kit, ns = env.kit, env.ns
    tiny = '{"requests": {"memory": "16Mi"}, "limits": {"memory": "16Mi"}}'
    kit.create_session(ns, "oom", session_spec(env.server, 1002, endpoint=env.endpoint,
                                               recording={"maxRestarts": 1}),
                       annotations={"reel.dev/recorder-resources": tiny})
    t0 = time.monotonic()
    obj = kit.wait_phase(ns, "oom", TERMINAL, 240)
    status = obj["status"]
    assert status["phase"] == "Failed" and status.get("restarts") == 1, status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TooManyRestarts" and "memory" in ready["message"], ready
    _no_recorder_pod(kit, ns, "oom")
    print(f"OOM with maxRestarts 1: Failed/TooManyRestarts after {time.monotonic() - t0:.1f} s")
