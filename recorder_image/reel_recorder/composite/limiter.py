"""A peak limiter for the mixed audio: FFmpeg's ``alimiter`` through a PyAV filter graph.

abuffer (fltp) → alimiter → aformat (fltp) → abuffersink. Settings: ``limit`` -1 dBFS (headroom for the AAC
encoder), ``level=0`` (no automatic gain: levels under the limit pass unchanged), ``latency=1`` (the filter's
5 ms look-ahead is compensated: output sample k is input sample k). Because of the look-ahead the filter holds
the last few milliseconds it was given; ``process`` returns what came out (at first a little less than went
in), ``flush`` the rest. The caller (audio.py) keeps count.

Not thread-safe: the mixer calls it on the compositor thread only.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

LIMIT_DB = -1.0


class Limiter:
    def __init__(self, rate: int, layout: str, limit_db: float = LIMIT_DB):
        self.rate, self.layout = rate, layout
        self.channels = av.AudioLayout(layout).nb_channels
        self.limit = 10 ** (limit_db / 20)
        self._graph = av.filter.Graph()
        src = self._graph.add_abuffer(format="fltp", sample_rate=rate, layout=layout, time_base=Fraction(1, rate))
        lim = self._graph.add("alimiter", limit=f"{self.limit:.6f}", level="0", latency="1")
        fmt = self._graph.add("aformat", sample_fmts="fltp", sample_rates=str(rate), channel_layouts=layout)
        sink = self._graph.add("abuffersink")
        src.link_to(lim)
        lim.link_to(fmt)
        fmt.link_to(sink)
        self._graph.configure()
        self._pts = 0
        self._flushed = False

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Limit ``samples`` (channels x n, float32); returns the limited samples that are ready, in order."""
        if samples.shape[1] == 0:
            return np.zeros((self.channels, 0), np.float32)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp",
                                           layout=self.layout)
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = Fraction(1, self.rate)
        self._pts += samples.shape[1]
        self._graph.push(frame)
        return self._pull()

    def flush(self) -> np.ndarray:
        """Everything still held (the look-ahead); the limiter is done afterwards."""
        if self._flushed:
            return np.zeros((self.channels, 0), np.float32)
        self._flushed = True
        self._graph.push(None)
        return self._pull()

    def _pull(self) -> np.ndarray:
        out = []
        while True:
            try:
                frame = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            out.append(frame.to_ndarray())
        if not out:
            return np.zeros((self.channels, 0), np.float32)
        return np.concatenate(out, axis=1).astype(np.float32, copy=False)
