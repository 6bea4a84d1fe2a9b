"""Benchmark: the CPU and the quality of Opus → AAC settings (not a test; prints measurements).

What a recorder does with a participant's sound (output/audio.py): Opus packets as a WebRTC sender makes them
(libopus, 48 kHz, 20 ms, stereo-signalled mono) are decoded and encoded to mono AAC. Each configuration below
transcodes the same packets; measured:

- CPU: the thread's CPU time (``time.thread_time``: user + sys of this thread only, so other processes on a
  shared machine count only through caches) per second of audio, as % of one core; the median of ``--reps``
  rounds, the configurations taking turns in each round.
- quality: the AAC decoded again (FFmpeg's decoder), brought back to 48 kHz, aligned by cross-correlation and
  scaled by least squares; SNR = reference power / power of the difference, over the middle of the signal. The
  reference is what the transcoder was given: the Opus packets decoded (FFmpeg's decoder, mono), so the SNR is what the
  transcoding loses. "Opus vs source" is the Opus leg's own SNR against the source signal, for scale (Opus's
  VOIP mode filters and shapes the sound: waveform SNR says little about how it sounds, only that the
  transcoding adds nothing audible to it when the AAC's SNR against the Opus decode is high).
  Signals: a 1 kHz tone; "music", eight tones from 110 Hz to 9.3 kHz with falling levels; "speech", a voiced
  sound (a 120-220 Hz gliding pitch with its harmonics, shaped by three formants) switched on and off.

    python benchmarks/audio_transcode.py [--seconds 10] [--reps 5] [--opus-bitrate 48000]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recorder_image"))

from reel_recorder.output.audio import OpusToAac  # noqa: E402

SRC_RATE = 48000


def signals(seconds: float) -> dict[str, np.ndarray]:
    t = np.arange(int(seconds * SRC_RATE)) / SRC_RATE
    tone = 0.3 * np.sin(2 * np.pi * 1000 * t)
    freqs = [110, 220, 440, 880, 1760, 3520, 6000, 9300]
    music = sum(0.25 / (1 + i) * np.sin(2 * np.pi * f * t + i) for i, f in enumerate(freqs))
    f0 = 170 + 50 * np.sin(2 * np.pi * 0.7 * t)  # a gliding pitch
    phase = 2 * np.cumsum(np.pi * f0 / SRC_RATE)
    voiced = np.zeros_like(t)
    for h in range(1, 30):  # harmonics under three formants (~500, 1500, 2500 Hz)
        fh = h * f0
        gain = sum(np.exp(-((fh - fc) / bw) ** 2) for fc, bw in ((500, 200), (1500, 300), (2500, 400)))
        voiced += gain * np.sin(h * phase) / h
    envelope = (np.sin(2 * np.pi * 2.5 * t) > -0.3).astype(float)  # syllables and pauses
    speech = 0.3 * voiced / np.max(np.abs(voiced)) * np.convolve(envelope, np.ones(240) / 240, "same")
    return {"tone 1 kHz": tone, "music": music / np.max(np.abs(music)) * 0.5, "speech": speech}


def opus_packets(x: np.ndarray, bit_rate: int) -> list[tuple[bytes, float]]:
    """(packet, capture time of its first input sample) as a WebRTC sender stamps them."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = SRC_RATE, "stereo", "s16", bit_rate
    enc.options = {"frame_duration": "20", "application": "voip"}
    pcm = (np.stack([x, x]).T * 32767).astype(np.int16)
    out = []
    for i in range(0, len(x) - 959, 960):
        f = av.AudioFrame.from_ndarray(pcm[i:i + 960].reshape(1, -1), format="s16", layout="stereo")
        f.sample_rate, f.pts, f.time_base = SRC_RATE, i, Fraction(1, SRC_RATE)
        out += [bytes(p) for p in enc.encode(f)]
    return [(p, i * 960 / SRC_RATE) for i, p in enumerate(out)]


class Chain:
    """A configurable Opus → mono AAC transcoder (``rate``: the AAC's; ``coder``: the encoder's aac_coder):

    - "before": FFmpeg's Opus decoder in stereo, a resampler to mono, a sample queue, PyAV's ``encode`` (whose own
      filter graph cuts frames again): the chain before issue 18;
    - "direct": the decoder in mono (planar float), the queue, whole frames to the encoder (output/audio.py's way;
      48 kHz only);
    - "graph": the decoder in mono, every decoded frame to PyAV's ``encode``, whose filter graph converts the rate
      and cuts the frames (the way to another AAC rate)."""

    def __init__(self, mode: str, rate: int = 48000, coder: str = "fast", bit_rate: int = 64000,
                 options: dict | None = None):
        self.mode, self.rate = mode, rate
        self.decoder = av.CodecContext.create("opus", "r")
        self.decoder.sample_rate = SRC_RATE
        self.decoder.layout = "stereo" if mode == "before" else "mono"
        self._holder = av.open(io.BytesIO(), "w", format="mpegts")
        stream = self._holder.add_stream("aac", rate=rate, layout="mono")
        self.encoder = stream.codec_context
        self.encoder.bit_rate = bit_rate
        self.encoder.options = {"aac_coder": coder, **(options or {})}
        self._holder.start_encoding()
        self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate) if mode == "before" else None
        self.fifo = av.AudioFifo()
        self.pts = 0

    def encode(self, packet: av.Packet, t: float) -> list[av.Packet]:
        out = []
        for frame in self.decoder.decode(packet):
            if self.mode == "graph":
                frame.pts, frame.time_base = round(t * SRC_RATE), Fraction(1, SRC_RATE)
                out += self.encoder.encode(frame)
                continue
            for mono in self.resampler.resample(frame) if self.resampler else [frame]:
                mono.pts = None
                self.fifo.write(mono)
                while self.fifo.samples >= 1024:
                    f = self.fifo.read(1024)
                    f.pts, f.time_base = self.pts, Fraction(1, self.rate)
                    self.pts += 1024
                    if self.mode == "before":
                        out += self.encoder.encode(f)
                    else:
                        out += self.encoder._send_frame_and_recv(f)
        return out

    def close(self) -> list[av.Packet]:
        return list(self.encoder.encode(None))


def run(make, packets) -> tuple[float, list[av.Packet], int]:
    tx = make()
    c0 = time.thread_time()
    out = []
    for data, t in packets:
        out += tx.encode(av.Packet(data), t)
    out += tx.close()
    return time.thread_time() - c0, out, tx.encoder.sample_rate


def decode_aac(packets: list[av.Packet], rate: int) -> np.ndarray:
    dec = av.CodecContext.create("aac", "r")
    dec.sample_rate, dec.layout = rate, "mono"
    dec.extradata = None
    back = av.AudioResampler(format="flt", layout="mono", rate=SRC_RATE)
    pcm = []
    for p in packets:
        for f in dec.decode(p):
            pcm += [r.to_ndarray().reshape(-1) for r in back.resample(f)]
    pcm += [r.to_ndarray().reshape(-1) for r in back.resample(None)]
    return np.concatenate(pcm)


def decode_opus(packets) -> np.ndarray:
    dec = av.CodecContext.create("opus", "r")
    dec.sample_rate, dec.layout = SRC_RATE, "mono"
    return np.concatenate([f.to_ndarray().reshape(-1) for data, _ in packets for f in dec.decode(av.Packet(data))])


def snr_db(ref: np.ndarray, out: np.ndarray, max_lag: int = 4000) -> float:
    n = min(len(ref), len(out)) - 2 * max_lag
    mid = slice(max_lag + SRC_RATE // 2, max_lag + n - SRC_RATE // 2)
    r = ref[mid]
    best = None
    size = 1 << int(np.ceil(np.log2(len(ref) + len(out))))
    corr = np.fft.irfft(np.fft.rfft(out, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.concatenate([corr[:max_lag], corr[-max_lag:]])
    lag = int(np.argmax(lags))
    lag = lag if lag < max_lag else lag - 2 * max_lag
    o = out[mid.start + lag: mid.stop + lag]
    gain = float(np.dot(o, r) / max(np.dot(o, o), 1e-12))
    best = 10 * np.log10(np.sum(r ** 2) / max(np.sum((r - gain * o) ** 2), 1e-20))
    return round(float(best), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--opus-bitrate", type=int, default=48000)
    args = ap.parse_args()
    configs = {
        "before: stereo decode → resampler → queue → encode()": lambda: Chain("before"),
        "output/audio.py: mono decode → queue → encoder, 48 kHz": lambda: OpusToAac(),
        "same (this benchmark's copy, for the rows below)": lambda: Chain("direct"),
        "same, no TNS": lambda: Chain("direct", options={"aac_tns": "0"}),
        "same, no PNS": lambda: Chain("direct", options={"aac_pns": "0"}),
        "same, no TNS, no PNS": lambda: Chain("direct", options={"aac_tns": "0", "aac_pns": "0"}),
        "same, cutoff 16 kHz": lambda: Chain("direct", options={"cutoff": "16000"}),
        "same, aac_coder twoloop": lambda: Chain("direct", coder="twoloop"),
        "same, 48 kb/s": lambda: Chain("direct", bit_rate=48000),
        "mono decode → encode() converting to 32 kHz": lambda: Chain("graph", 32000),
        "mono decode → encode() converting to 24 kHz": lambda: Chain("graph", 24000),
    }
    sigs = signals(args.seconds)
    packets = {name: opus_packets(x, args.opus_bitrate) for name, x in sigs.items()}
    cpu: dict[str, list[float]] = {c: [] for c in configs}
    snr: dict[str, dict[str, float]] = {c: {} for c in configs}
    for rep in range(args.reps):
        for cname, make in configs.items():
            for sname, pk in packets.items():
                used, out, rate = run(make, pk)
                cpu[cname].append(used / (len(pk) * 0.02) * 100)
                if rep == 0:
                    snr[cname][sname] = snr_db(decode_opus(packets[sname]), decode_aac(out, rate))
    opus = {sname: decode_opus(pk) for sname, pk in packets.items()}
    ceiling = {sname: snr_db(sigs[sname], opus[sname]) for sname in packets}
    names = list(sigs)
    print(f"Opus in: libopus {args.opus_bitrate // 1000} kb/s, 20 ms; CPU: thread CPU per audio-second, median of "
          f"{args.reps} rounds x {len(sigs)} signals; SNR in dB")
    print("\nconfiguration | CPU % of a core per participant | " + " | ".join(f"SNR {n}" for n in names))
    print("(Opus vs source) | - | " + " | ".join(str(ceiling[n]) for n in names))
    for cname in configs:
        print(f"{cname} | {statistics.median(cpu[cname]):.3f} | " + " | ".join(str(snr[cname][n]) for n in names))


if __name__ == "__main__":
    main()
