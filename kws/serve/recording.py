"""Labelling an uploaded recording: its detections, their CSV and the waveform's envelope, read
block by block (never whole), in slices short enough to let listeners go first between them."""

import dataclasses

import numpy as np
import soundfile as sf

from kws import SAMPLE_RATE
from kws.audio import stream_wav
from kws.serve.protocol import detection_dict
from kws.streaming import detections_csv

ENVELOPE_COLUMNS = 2000
UPLOAD_SLICE = SAMPLE_RATE // 4  # samples an upload works on before it lets listeners go first


class UploadCancelled(Exception):
    """The client of an upload went away; its work stopped."""


def expected_samples(path, max_seconds):
    """The length of a file from its header, at least 1; an unknown length (or one over the
    limit, which decoding will refuse) sizes for max_seconds."""
    try:
        seconds = sf.info(path).duration
    except Exception:
        seconds = 0.0
    if not 0 < seconds <= (max_seconds or np.inf):  # unknown length: size for the limit
        seconds = max_seconds or 0.0
    return max(int(seconds * SAMPLE_RATE), 1)


def label_recording(spotter, path, max_seconds=None, may_go_on=None, columns=ENVELOPE_COLUMNS):
    """Detections, their CSV and the waveform envelope (min/max per column) of a file, read
    block by block (never whole), at most max_seconds of it (AudioTooLong). may_go_on() is
    asked before every block: it may wait (for listeners), and False stops the work
    (UploadCancelled)."""
    per_column = max(expected_samples(path, max_seconds) // columns, 1)
    lows, highs, found = [], [], []
    pending = np.zeros(0, np.float32)
    for block in stream_wav(path, UPLOAD_SLICE, max_seconds):
        if may_go_on and not may_go_on():
            raise UploadCancelled()
        found += spotter.feed(block)
        pending = np.concatenate([pending, block])
        usable = len(pending) // per_column * per_column
        if usable:
            cols = pending[:usable].reshape(-1, per_column)
            lows += cols.min(axis=1).tolist()
            highs += cols.max(axis=1).tolist()
            pending = pending[usable:]
    if len(pending):
        lows.append(float(pending.min()))
        highs.append(float(pending.max()))
    return {"duration_ms": round(spotter.heard_ms), "sample_rate": SAMPLE_RATE,
            "detections": [detection_dict(d) for d in found], "csv": detections_csv(found),
            "envelope": {"column_ms": per_column * 1000 / SAMPLE_RATE,
                         "min": [round(v, 4) for v in lows], "max": [round(v, 4) for v in highs]},
            "settings": dataclasses.asdict(spotter.settings)}
