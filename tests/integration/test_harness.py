"""The test harness works: network namespace, Janus, synthetic publishers, media reaching a receiver."""

from __future__ import annotations

import fractions
import json
import subprocess
import time
import urllib.request

import av
import numpy as np
import pytest
from tests.harness import media
from tests.harness.rtp import RtpSink, wait_until

VIDEO_PORT, VIDEO_RTCP_PORT, AUDIO_PORT = 25000, 25001, 25002


def _events(p, name):
    return [e for e in p.events if e["event"] == name]


def test_janus_runs_in_the_namespace_with_only_what_we_need(janus, test_network):
    assert janus.alive()
    assert janus.startup_seconds is not None and janus.startup_seconds < 20
    with urllib.request.urlopen(janus.http_url + "/info", timeout=5) as r:
        info = json.loads(r.read())
    assert set(info["plugins"]) == {"janus.plugin.videoroom"}
    assert set(info["transports"]) == {"janus.transport.http", "janus.transport.websockets"}
    assert not info.get("loggers")
    # Janus listens on the namespace address only, not in the root namespace
    assert test_network.addr in janus.ws_url
    out = test_network.run(["ss", "-ltnH"]).stdout
    assert f"{test_network.addr}:8188" in out and f"{test_network.addr}:8088" in out


def test_publisher_joins_and_publishes_h264_and_opus(room, publisher, janus):
    p = publisher(room, display="alice", duration=3)
    joined = p.wait_event("joined", timeout=60)
    published = p.wait_event("published", timeout=60)  # sent after Janus reported webrtcup
    codecs = {s["type"]: s["codec"] for s in published["streams"]}
    assert codecs == {"audio": "opus", "video": "h264"}

    pubs = janus.wait_for_publishers(room.id, 1, timeout=30)
    assert [(x["id"], x["display"]) for x in pubs] == [(joined["id"], "alice")]

    ex = p.wait(timeout=60)
    media_s = ex["media"]
    assert 3.0 <= media_s < 6.0
    # every frame and sample of the planned 3 s handed to the encoder (30 fps, 48 kHz)
    assert 90 <= ex["video_frames"] <= 92
    assert 3 * 48000 <= ex["audio_samples"] <= 3 * 48000 + 2 * 960
    assert ex["last_frame_number"] == ex["video_frames"] - 1
    assert ex["video_sizes"] == {"640x480": ex["video_frames"]}
    # bitrate near the room's 512 kb/s cap (Janus REMB), not a trickle
    kbps = ex["video_bytes"] * 8 / 3 / 1000
    assert 150 < kbps < 1200, kbps
    janus.wait_for_publishers(room.id, 0, exact=True, timeout=30)


def test_forwarded_media_arrives_and_pli_gets_a_keyframe(make_room, publisher, janus, test_network):
    # no periodic FIR and a long-GOP sender: keyframes only on request
    room = make_room(fir_freq=None)
    p = publisher(room, display="longgop", long_gop=True, duration=30)
    pid = p.wait_event("joined")["id"]
    streams = {s["type"]: s for s in p.wait_event("published")["streams"]}

    with RtpSink(test_network.host_addr, [VIDEO_PORT, AUDIO_PORT]) as sink:
        fwd = janus.rtp_forward(room.id, pid, test_network.host_addr, [
            {"mid": streams["video"]["mid"], "port": VIDEO_PORT, "rtcp_port": VIDEO_RTCP_PORT},
            {"mid": streams["audio"]["mid"], "port": AUDIO_PORT},
        ])
        forwarders = fwd["forwarders"]
        video_fwd = next(f for f in forwarders if f.get("type") == "video")
        v, a = sink.stats[VIDEO_PORT], sink.stats[AUDIO_PORT]
        wait_until(lambda: v.packets > 50 and a.packets > 25, timeout=15, what="forwarded RTP")
        assert len(v.payload_types) == 1 and len(a.payload_types) == 1

        # The long-GOP sender sends no keyframe by itself (the forward may catch the very first IDR of the
        # stream if it starts right then): no new IDR for 2 s ...
        with sink.lock:
            idr_before = len(v.idr_times)
        time.sleep(2.0)
        with sink.lock:
            assert len(v.idr_times) == idr_before, v.idr_times
        # ... until we ask for one
        asked = time.monotonic()
        sink.send_pli(VIDEO_RTCP_PORT, test_network.addr, video_fwd["local_rtcp_port"], v.last_ssrc)
        wait_until(lambda: len(v.idr_times) > idr_before, timeout=5, what="IDR after PLI")
        latency = v.idr_times[idr_before] - asked
        assert latency < 2.0

        for f in forwarders:
            janus.stop_rtp_forward(room.id, pid, f["stream_id"])
        assert janus.list_forwarders(room.id) == [] or all(
            not x.get("forwarders") for x in janus.list_forwarders(room.id))

    ex = p.stop()
    assert ex["keyframe_requests"] >= 1
    # IDRs: the first frame, perhaps the codec start, and the ones we asked for; never periodic ones
    assert len(ex["keyframes"]) <= 2 + ex["keyframe_requests"], ex["keyframes"]
    assert ex["codec_restarts"] == 0
    # REMB (room bitrate 512 kb/s) reached the running encoder: ~0.5 Mb/s, not aiortc's initial 1 Mb/s
    assert ex["bitrate_changes"] >= 1


def test_udp_loss_injection_drops_forwarded_packets(room, publisher, janus, test_network):
    p = publisher(room, display="lossy", no_video=True, duration=30)
    pid = p.wait_event("joined")["id"]
    audio_mid = p.wait_event("published")["streams"][0]["mid"]
    rule = test_network.add_udp_loss(AUDIO_PORT, 0.5)
    try:
        with RtpSink(test_network.host_addr, [AUDIO_PORT]) as sink:
            janus.rtp_forward(room.id, pid, test_network.host_addr, [{"mid": audio_mid, "port": AUDIO_PORT}])
            a = sink.stats[AUDIO_PORT]
            wait_until(lambda: sum(test_network.udp_drop_counts().values()) >= 25, timeout=15,
                       what="dropped packets")
            dropped = sum(test_network.udp_drop_counts().values())
            with sink.lock:
                received = a.packets
            assert received > 0
            frac = dropped / (dropped + received)
            assert 0.25 < frac < 0.75, (dropped, received)
    finally:
        rule.remove()
    assert test_network.udp_drop_counts() == {}
    p.stop()


def test_leave_and_rejoin_with_the_same_display(room, publisher, janus):
    p = publisher(room, display="bob", leave_at=2.0, rejoin_at=3.5, duration=5.0)
    first = p.wait_event("joined")
    p.wait_event("left", timeout=60)
    janus.wait_for_publishers(room.id, 0, exact=True, timeout=10)
    second = p.wait_event("joined", after=1, timeout=30)
    p.wait_event("published", after=1, timeout=30)
    pubs = janus.wait_for_publishers(room.id, 1, timeout=10)
    assert pubs[0]["display"] == "bob" and pubs[0]["id"] == second["id"] != first["id"]
    ex = p.wait(timeout=60)
    s0, s1 = ex["sessions"]
    assert s0["last_video"] < 2.0 + 0.05 and s1["first_video"] >= 3.5 - 0.05
    # the media clock kept running over the absence: ~2 s + ~1.5 s of frames
    assert 100 <= ex["video_frames"] <= 110


def test_special_modes_flash_beep_vfr_late_video_resolution_change(room, publisher):
    p = publisher(room, display="sync", flash_beep=True, vfr=True, video_delay=1.0,
                  resolution_change_at=["2.5:320x240"], duration=5.0)
    ex = p.wait(timeout=90)
    # beeps from second 0, flashes only once the camera is on; same instants
    assert ex["beep_onsets"][:6] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0][: len(ex["beep_onsets"])]
    assert ex["flash_onsets"] and ex["flash_onsets"][0] == 1.0
    assert set(ex["flash_onsets"]) <= set(ex["beep_onsets"])
    assert ex["sessions"][0]["first_video"] == 1.0
    assert set(ex["video_sizes"]) == {"640x480", "320x240"}
    # variable frame rate: 20-30 frames per second of video
    assert 4 * 20 <= ex["video_frames"] <= 4 * 30 + 1
    # the resolution change re-created the encoder, which starts with an IDR
    assert any(2.5 <= t < 2.6 for t in ex["keyframes"]), ex["keyframes"]


def test_audio_only_publisher(room, publisher):
    p = publisher(room, display="mic", no_video=True, duration=2)
    streams = p.wait_event("published")["streams"]
    assert [s["type"] for s in streams] == ["audio"]
    ex = p.wait(timeout=60)
    assert ex["video_frames"] == 0 and ex["audio_samples"] >= 2 * 48000


@pytest.mark.parametrize("res", [(640, 480), (320, 240)])
def test_barcode_and_flash_survive_h264(res):
    """The frame-number barcode and the flash survive libx264 at a low bitrate (what recordings get)."""
    w, h = res
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.bit_rate = 300_000
    enc.time_base = fractions.Fraction(1, 30)
    enc.options = {"tune": "zerolatency", "preset": "veryfast"}
    dec = av.CodecContext.create("h264", "r")
    frames = media.make_pattern_frames(w, h, 30)
    flat = [media.make_flat_frame(w, h, media.Y_BLACK), media.make_flat_frame(w, h, media.Y_WHITE)]
    numbers = [0, 1, 2, 3, 255, 256, 65535, 2**24 + 7, 2**31 + 5, *range(1000, 1031)]
    decoded = []
    for i, n in enumerate(numbers):
        f = flat[i % 2] if i >= 30 else frames[i % 30]
        media.stamp_barcode(f, n)
        f.pts = i
        for pkt in enc.encode(f):
            decoded += dec.decode(pkt)
    for pkt in enc.encode(None):
        decoded += dec.decode(pkt)
    assert len(decoded) == len(numbers)
    got = [media.read_barcode(fr.to_ndarray(format="gray")) for fr in decoded]
    assert got == numbers
    lumas = [media.frame_luma(fr.to_ndarray(format="gray")) for fr in decoded[30:]]
    assert all((lum > 200) == (i % 2 == 1) for i, lum in zip(range(30, len(numbers)), lumas, strict=True))


def test_colour_frames_keep_their_colour_and_barcode_through_h264():
    """--colour: a solid colour (BT.601 limited range, what swscale makes of RGB) that H.264 keeps, barcode on top."""
    w, h = 320, 240
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.bit_rate = 300_000
    enc.time_base = fractions.Fraction(1, 30)
    enc.options = {"tune": "zerolatency", "preset": "veryfast"}
    dec = av.CodecContext.create("h264", "r")
    rgb = media.parse_colour("#00ff00")
    assert media.colour_yuv(rgb) == (145, 54, 34)
    frames = media.make_colour_frames(w, h, rgb, 10)
    decoded = []
    for i, f in enumerate(frames):
        media.stamp_barcode(f, 1000 + i)
        f.pts = i
        for pkt in enc.encode(f):
            decoded += dec.decode(pkt)
    for pkt in enc.encode(None):
        decoded += dec.decode(pkt)
    assert [media.read_barcode(fr.to_ndarray(format="gray")) for fr in decoded] == list(range(1000, 1010))
    for fr in decoded:
        y, u, v = (np.frombuffer(pl, np.uint8).reshape(pl.height, pl.line_size)[:, :pl.width] for pl in fr.planes)
        centre = (y[100:140, 140:180].mean(), u[50:70, 70:90].mean(), v[50:70, 70:90].mean())
        assert all(abs(a - b) < 4 for a, b in zip(centre, (145, 54, 34), strict=True)), centre
    assert media.parse_colour("ff0000") == (255, 0, 0)
    with pytest.raises(ValueError):
        media.parse_colour("red")


def test_beep_onsets_helper():
    frames = media.make_beep_frames(0.06)
    one_s = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    onsets = media.beep_onsets(np.concatenate([one_s, one_s]), media.AUDIO_RATE)
    assert onsets == pytest.approx([0.0, 1.0], abs=0.001)


def test_room_pin_is_passed_and_checked(make_room, publisher):
    room = make_room(pin="1234-pin")
    ok = publisher(room, display="pinned", duration=1)  # the fixture passes room.pin
    ok.wait_event("published")
    bad = publisher(room.id, display="intruder", pin="wrong", duration=1)
    bad.proc.wait(60)
    assert bad.proc.returncode == 1
    assert "error" in {e["event"] for e in bad.events}
    assert ok.wait(timeout=60)["rc"] == 0


def test_token_auth_janus_and_publisher_token(test_network, tmp_path, publisher):
    from tests.harness.janus import Janus

    j = Janus(test_network, tmp_path / "janus-token", token_auth=True, http_port=8089, ws_port=8189,
              admin_port=7089, rtp_port_range="21000-21999")
    j.start()
    try:
        j.add_token("good-token")
        j.create_room(4242, token="good-token")
        p = publisher(4242, display="tokened", token="good-token", duration=1, ws=j.ws_url)
        p.wait_event("published")
        assert p.wait(timeout=60)["rc"] == 0
        bad = publisher(4242, display="untokened", duration=1, ws=j.ws_url)
        bad.proc.wait(60)
        assert bad.proc.returncode == 1
    finally:
        j.stop()


def test_stale_namespaces_of_dead_runs_are_removed(test_network):
    from tests.harness import netns

    dead_pid = 4_000_000  # above pid_max: never alive
    name = f"{netns.NS_PREFIX}{dead_pid}-0"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in netns.list_test_namespaces()
        removed = netns.cleanup_stale()
        assert name in removed
        assert name not in netns.list_test_namespaces()
        assert test_network.ns in netns.list_test_namespaces()  # ours (alive pid) is kept
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
