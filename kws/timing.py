"""Timing a streaming model: each predict() it makes, and a stream of noise to time it on
(recognize_commands.py reports the figures)."""

import time

import numpy as np

from kws import SAMPLE_RATE
from kws.runtime import predict_hop


class TimedModel:
    """A model whose every predict() is timed."""

    def __init__(self, model):
        self.model, self.seconds = model, []

    def predict(self, samples):
        return self._timed(self.model.predict, samples)

    def predict_hop(self, window, advanced):
        return self._timed(predict_hop, self.model, window, advanced)

    def _timed(self, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.seconds.append(time.perf_counter() - t0)
        return out


def noise_blocks(seconds, seed=0, block=SAMPLE_RATE // 10):
    rng = np.random.default_rng(seed)
    for _ in range(int(seconds * SAMPLE_RATE) // block):
        yield (rng.standard_normal(block) * 0.05).astype(np.float32)
