"""The models' log-mel / MFCC front end in numpy, frame by frame, for streaming.

A one-second model recomputes every frame of its window each hop; when the hop is a multiple of
the front end's frame hop, all but the newest frames are the ones the last window had, shifted.
`FrameCache` keeps them and computes only the new frames; the network after the front end (the
model's "body", exported by freeze_graph.py as NAME_stream_body*.tflite) then runs on the
cached features. The constants (window, mel matrix, normalisation, DCT or grey levels) come from
the model's own layer (kws.layers: LogMel.stream_constants), saved as NAME_stream.npz, so this
front end equals the model's to float rounding. Needs numpy only.
"""

import numpy as np

from kws.common import UserError
from kws.pack import GREY_CENTRE, GREY_SPREAD


class FrontEnd:
    """Features of frames: float32 [n, window] samples -> [n, bins]."""

    def __init__(self, constants):
        try:
            self.window = int(constants["window"])
            self.hop = int(constants["hop"])
            self.frames = int(constants["frames"])
            self.power = float(constants["power"])
            self.log_offset = float(constants["log_offset"])
            self.mel = np.asarray(constants["mel"], np.float64)
            self.dct = np.asarray(constants["dct"], np.float64) if "dct" in constants else None
            self.grey = tuple(np.asarray(constants["grey"], np.float64)) \
                if "grey" in constants else None
            self.norm = None if self.dct is not None or self.grey is not None else (
                float(constants["norm_mean"]), float(constants["norm_std"]))
        except (KeyError, ValueError, TypeError) as e:
            raise UserError(f"not a front-end description ({e})") from None
        self.hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.window) / self.window)

    @classmethod
    def load(cls, path):
        try:
            with np.load(path) as data:
                return cls({k: data[k] for k in data.files})
        except Exception as e:  # OSError, ValueError, zipfile.BadZipFile, EOFError ...
            raise UserError(f"{path}: not a front-end file ({e})") from None

    def log_mel(self, frames):
        spectrum = np.abs(np.fft.rfft(np.asarray(frames, np.float64) * self.hann, axis=-1))
        if self.power == 2.0:
            spectrum = spectrum ** 2
        return np.log(spectrum @ self.mel + self.log_offset)

    def features(self, frames):
        log_mel = self.log_mel(frames)
        if self.dct is not None:
            return (log_mel @ self.dct).astype(np.float32)
        if self.grey is not None:
            scale, offset = self.grey
            grey = np.clip(scale * log_mel + offset, 0.0, 255.0)
            return ((grey - GREY_CENTRE) / GREY_SPREAD).astype(np.float32)
        mean, std = self.norm
        return ((log_mel - mean) / std).astype(np.float32)

    def frame_starts(self):
        """Start of each frame within a one-second window."""
        return np.arange(self.frames) * self.hop

    def window_features(self, window):
        """All frames of a one-second window: [frames, bins]."""
        starts = self.frame_starts()
        return self.features(np.stack([window[s:s + self.window] for s in starts]))


class FrameCache:
    """The features of the current window, updated by computing only the frames a hop adds."""

    def __init__(self, front_end):
        self.front_end = front_end
        self.features = None

    def update(self, window, advanced):
        """Features [frames, bins] of `window`, which is the last one moved on by `advanced`
        samples (anything else, or a move that is not a whole number of frame hops, recomputes
        every frame)."""
        fe = self.front_end
        new = advanced // fe.hop if advanced % fe.hop == 0 else fe.frames + 1
        if self.features is None or new > fe.frames // 2:
            self.features = fe.window_features(window)
            return self.features
        if new:
            starts = fe.frame_starts()[-new:]
            fresh = fe.features(np.stack([window[s:s + fe.window] for s in starts]))
            self.features = np.concatenate([self.features[new:], fresh])
        return self.features
