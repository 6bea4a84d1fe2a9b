"""A/V alignment of each participant's own recording, measured (issue 16: within 5 ms median, 10 ms max).

Publishers whose flash and beep come from one clock (``--flash-beep``: a white frame and a 1 kHz beep at every
whole media second), several at once, so that each run gives several participants, each with their own streams,
demuxers and alignment; for each ingest (forward: RTP forwarding; webrtc: a subscription per participant).
The offset of a flash is its first white frame minus the beep's first loud sample
(``tests.support.analyze.av_offsets``); positive: video later than audio.
"""

from __future__ import annotations

import statistics

from tests.support.analyze import av_offsets, read_participant, recording_folders
from tests.support.ingests import INGESTS


@INGESTS
def test_av_alignment_of_several_flash_beep_publishers(record, room, publisher, ingest):
    run = record(room, recording=ingest)
    run.wait_event("joined", timeout=30)
    pubs = [publisher(room, display=f"sync{i}", duration=12, flash_beep=True, vfr=(i == 2)) for i in range(3)]
    for p in pubs:
        p.wait(90)
    assert run.wait(60)["phase"] == "Completed"
    figures = {}
    for name, folder in sorted(recording_folders(run.output).items()):
        _info, d = read_participant(folder)
        assert d.decode_errors == 0, name
        offsets = av_offsets(d.flashes, d.beeps, d.video_times)
        assert len(offsets) >= 8, (name, offsets)
        figures[name] = offsets
        print(f"A/V {name}: median {statistics.median(offsets) * 1000:+.1f} ms, "
              f"max |{max(abs(o) for o in offsets) * 1000:.1f}| ms, "
              f"all {[round(float(o) * 1000, 1) for o in offsets]}")
    assert len(figures) == 3, figures
    for name, offsets in figures.items():
        # issue 16: sound meets picture within 5 ms (median) and 10 ms (max) per participant
        assert abs(statistics.median(offsets)) <= 0.005, (name, offsets)
        assert max(abs(o) for o in offsets) <= 0.010, (name, offsets)
