"""Keyword spotting on continuous audio: a ring buffer that runs a one-second model every stride,
and a recognizer that turns its scores into detections.

    spotter = Spotter(model, labels, StreamSettings())
    for chunk in chunks:                    # float32 samples at 16 kHz, any length
        for detection in spotter.feed(chunk):
            print(detection.time_ms, detection.label, detection.score)

The recognizer takes the TF speech_commands example's parameters (stride, averaging window,
threshold, suppression, minimum count) and, with `rearm=False`, reproduces its RecognizeCommands
exactly. With `rearm=True` (the default) it fixes that recognizer's quirk: there a label can
only fire after a different one did, so "yes ... yes" fires once. Here a label fires again once
its smoothed score has fallen back below the threshold and the suppression time has passed.
Needs numpy only (and the model's runtime).
"""

import collections
import csv
import dataclasses
import io
import json
import math
import os

import numpy as np

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.common import UserError, atomic_write_text, read_text
from kws.labels import SILENCE_LABEL
from kws.runtime import predict_hop

SETTINGS_SUFFIX = "_streaming.json"  # beside NAME.tflite: NAME_streaming.json
# Upper bounds keep one stream's state small whatever a client asks (the score history holds
# average_window_ms / stride_ms results).
SETTINGS_BOUNDS = {"stride_ms": (10, 1000), "average_window_ms": (0, 10_000),
                   "detection_threshold": (0, 1), "suppression_ms": (0, 60_000),
                   "minimum_count": (1, 1000)}


@dataclasses.dataclass
class StreamSettings:
    """How scores become detections. Defaults: the TF example's test_streaming_accuracy.py."""
    stride_ms: float = 30.0            # run the model every stride on the last second
    average_window_ms: float = 500.0   # smooth scores over this much past
    detection_threshold: float = 0.7   # smoothed top score needed to fire
    suppression_ms: float = 500.0      # at least this long between two detections
    minimum_count: int = 4             # results needed in the window before anything fires
    rearm: bool = True                 # False: the TF example's "a different label first" rule

    def __post_init__(self):
        try:
            for name in ("stride_ms", "average_window_ms", "detection_threshold",
                         "suppression_ms"):
                setattr(self, name, float(getattr(self, name)))
            count = float(self.minimum_count)
            if isinstance(self.minimum_count, bool) or not math.isfinite(count) or \
                    count != int(count):
                raise ValueError(f"minimum_count must be a whole number, got {count:g}")
            self.minimum_count = int(count)
        except (TypeError, ValueError, OverflowError) as e:
            raise UserError(f"streaming settings: {e}") from None
        if not isinstance(self.rearm, bool):
            raise UserError(f"streaming settings: rearm must be true or false, got {self.rearm!r}")
        for name, (low, high) in SETTINGS_BOUNDS.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise UserError(f"streaming settings: {name} must be in [{low:g}, {high:g}], "
                                f"got {value:g}")

    @classmethod
    def from_dict(cls, options):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in fields and v is not None})


def tf_example_settings():
    """The TF example's recognizer, quirk included: the baseline to compare with."""
    return StreamSettings(rearm=False)


def settings_path(model_path):
    """NAME_streaming.json beside NAME.tflite (NAME_int8.tflite shares it)."""
    stem = os.path.splitext(model_path)[0]
    if stem.endswith("_int8"):
        stem = stem[:-len("_int8")]
    return stem + SETTINGS_SUFFIX


def load_settings(model_path, overrides=None):
    """The streaming settings a recipe chose for this model (if it stored any), then overrides."""
    stored = {}
    path = settings_path(model_path)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                stored = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a streaming settings file ({e})") from None
        if not isinstance(stored, dict):
            raise UserError(f"{path}: not a streaming settings file")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return StreamSettings.from_dict({**stored, **given})


def save_settings(model_path, settings, extra=None):
    record = {**dataclasses.asdict(settings), **(extra or {})}
    atomic_write_text(settings_path(model_path), json.dumps(record, indent=1) + "\n")
    return settings_path(model_path)


def add_ensemble_arg(parser):
    """--also_model: more models averaged with --model's (kws.runtime.load_streaming_models)."""
    parser.add_argument("--also_model", action="append", default=[], metavar="PATH",
                        help="average this model's probabilities with --model's (an ensemble; "
                             "repeat for more); the settings are still --model's")
    return parser


def add_settings_args(parser):
    """Recognizer flags; left unset they come from the model's NAME_streaming.json, else the
    TF example's defaults."""
    g = parser.add_argument_group("recognizer (default: NAME_streaming.json beside the model)")
    g.add_argument("--stride_ms", type=float, help="run the model every stride (TF: 30)")
    g.add_argument("--average_window_ms", type=float, help="smooth scores over this (TF: 500)")
    g.add_argument("--detection_threshold", type=float, help="smoothed score to fire (TF: 0.7)")
    g.add_argument("--suppression_ms", type=float, help="quiet time after a detection (TF: 500)")
    g.add_argument("--minimum_count", type=int, help="results in the window first (TF: 4)")
    g.add_argument("--no_rearm", dest="rearm", action="store_false", default=None,
                   help="the TF example's rule: a label fires again only after another did")
    return parser


def settings_from_flags(args):
    """StreamSettings of parsed add_settings_args flags (and --tf_example where there is one)."""
    if getattr(args, "tf_example", False):
        return tf_example_settings()
    fields = {f.name for f in dataclasses.fields(StreamSettings)}
    return load_settings(args.model, {k: v for k, v in vars(args).items() if k in fields})


@dataclasses.dataclass
class Detection:
    time_ms: float   # from the start of the audio, at the end of the window that fired
    label: str
    score: float


class Recognizer:
    """Smoothed scores -> detections (the TF example's RecognizeCommands, optionally re-armed)."""

    def __init__(self, labels, settings):
        self.labels = list(labels)
        self.settings = settings
        self.results = collections.deque()  # (time_ms, scores)
        self.total = None                   # sum of the scores in results
        self.previous_label = SILENCE_LABEL
        self.previous_time = -np.inf
        self.armed = {}                     # label -> fell below the threshold since it fired

    def process(self, scores, time_ms):
        """(detection or None, smoothed scores or None) for the scores of the window at time_ms."""
        average = self.smooth(scores, time_ms)
        if average is None:
            return None, None
        return self.decide(average, time_ms), average

    def smooth(self, scores, time_ms):
        """Add the window's scores; their moving average, or None while too few results have
        come to decide on."""
        s = self.settings
        scores = np.asarray(scores, np.float64)
        if scores.shape != (len(self.labels),):
            raise ValueError(f"expected {len(self.labels)} scores, got {scores.shape}")
        if self.results and time_ms < self.results[-1][0]:
            raise ValueError("results must come in time order")
        self.results.append((time_ms, scores))
        self.total = scores.copy() if len(self.results) == 1 else self.total + scores
        while time_ms - s.average_window_ms > self.results[0][0]:
            self.total -= self.results.popleft()[1]
        if (len(self.results) < s.minimum_count
                or time_ms - self.results[0][0] < s.average_window_ms / 4):
            return None
        return self.total / len(self.results)  # a running sum: O(classes) a hop

    def decide(self, average, time_ms):
        """The detection the moving average makes at time_ms, or None."""
        s = self.settings
        top = int(np.argmax(average))
        label, score = self.labels[top], float(average[top])
        for other in self.armed:
            if average[self.labels.index(other)] < s.detection_threshold:
                self.armed[other] = True
        since = np.inf if (self.previous_label == SILENCE_LABEL
                           or self.previous_time == -np.inf) else time_ms - self.previous_time
        new_label = label != self.previous_label or (s.rearm and self.armed.get(label, True))
        if score > s.detection_threshold and new_label and since > s.suppression_ms:
            self.previous_label, self.previous_time = label, time_ms
            self.armed[label] = False
            if label != SILENCE_LABEL:
                return Detection(time_ms, label, score)
        return None


class Windower:
    """A one-second ring buffer: feed samples of any length, get the window ending at every
    stride (the first once a full second has arrived)."""

    def __init__(self, stride_ms):
        self.stride = max(int(round(stride_ms * SAMPLE_RATE / 1000)), 1)
        self.ring = np.zeros(CLIP_SAMPLES, np.float32)
        self.samples_seen = 0
        self.next_end = CLIP_SAMPLES

    def feed(self, chunk):
        """Yield (time_ms at the window's end, window float32 [16000], samples it moved on
        since the last window) for this chunk. The window is the ring buffer itself: copy it
        to keep it past the next step."""
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        start = 0
        while start < len(chunk):
            take = min(len(chunk) - start, self.next_end - self.samples_seen)
            if take >= CLIP_SAMPLES:
                self.ring[:] = chunk[start + take - CLIP_SAMPLES:start + take]
            else:
                self.ring[:-take] = self.ring[take:]
                self.ring[-take:] = chunk[start:start + take]
            self.samples_seen += take
            start += take
            if self.samples_seen == self.next_end:
                advanced = CLIP_SAMPLES if self.next_end == CLIP_SAMPLES else self.stride
                yield self.samples_seen * 1000.0 / SAMPLE_RATE, self.ring, advanced
                self.next_end += self.stride


class Spotter:
    """Live keyword spotting: feed audio chunks of any length, get detections.

    model: anything with .predict(float32 [16000]) -> probabilities (kws.runtime models; a
    CachedFeaturesModel computes only the front-end frames each hop adds)."""

    def __init__(self, model, labels, settings=None):
        self.model = model
        self.settings = settings or StreamSettings()
        self.recognizer = Recognizer(labels, self.settings)
        self.windows = Windower(self.settings.stride_ms)

    def feed(self, chunk, on_scores=None):
        """Detections whose window ended within this chunk, in time order; on_scores(time_ms,
        probabilities, smoothed) sees every hop (for a live plot): smoothed is the recognizer's
        moving average, or None while it has too few results to decide."""
        detections = []
        for time_ms, window, advanced in self.windows.feed(chunk):
            probs = predict_hop(self.model, window, advanced)
            detection, smoothed = self.recognizer.process(probs, time_ms)
            if on_scores:
                on_scores(time_ms, probs, smoothed)
            if detection:
                detections.append(detection)
        return detections

    def update_settings(self, **changes):
        """Change how scores become detections mid-stream (threshold, smoothing, suppression,
        minimum count, rearm); the stride, which the model's hops depend on, stays."""
        if "stride_ms" in changes and float(changes["stride_ms"]) != self.settings.stride_ms:
            raise UserError("the stride cannot change mid-stream")
        self.settings = dataclasses.replace(self.settings, **changes)
        self.recognizer.settings = self.settings
        return self.settings

    @property
    def heard_ms(self):
        return self.windows.samples_seen * 1000.0 / SAMPLE_RATE


def score_stream(model, chunks, stride_ms, progress=None):
    """(times_ms [n], probabilities [n, k]) of every hop over an iterable of sample chunks: the
    model's work, done once, so that any recognizer settings can then be tried cheaply."""
    windows = Windower(stride_ms)
    times, probs = [], []
    for chunk in chunks:
        for time_ms, window, advanced in windows.feed(chunk):
            times.append(time_ms)
            probs.append(predict_hop(model, window, advanced))
        if progress:
            progress(len(chunk))
    if not probs:  # shorter than one window: no hop
        return np.zeros(0, np.float64), np.zeros((0, 0), np.float32)
    return np.asarray(times, np.float64), np.asarray(probs, np.float32)


def detections_csv(detections):
    """The text of a detections CSV: header time_ms,label,score, one row per detection."""
    rows = [f"{d.time_ms:.0f},{d.label},{d.score:.4f}" for d in detections]
    return "\n".join(["time_ms,label,score"] + rows) + "\n"


@dataclasses.dataclass
class SmoothedScores:
    """A recognizer's moving average at every hop of scored audio, the part of its work that no
    threshold, suppression or rearm changes: `recognize` decides on it for any of them."""
    times: np.ndarray    # [n] ms
    ready: np.ndarray    # [n] bool: enough results to decide on at this hop
    average: np.ndarray  # [n, k] float64, the moving average where ready (0 elsewhere)

    @classmethod
    def of(cls, times, probs, labels, settings):
        """Computed exactly as Recognizer does live (the same running sum), on times in ms as
        float64 (score_stream's; the live recognizer gets them so from a Windower)."""
        times = np.asarray(times, np.float64)
        recognizer = Recognizer(labels, settings)
        ready = np.zeros(len(times), bool)
        average = np.zeros((len(times), len(labels)), np.float64)
        for i, (time_ms, p) in enumerate(zip(times, probs)):
            a = recognizer.smooth(p, time_ms)
            if a is not None:
                ready[i], average[i] = True, a
        return cls(times, ready, average)


def recognize(times, probs, labels, settings, smoothed=None):
    """Detections of a recognizer with these settings over scores from score_stream: the same
    as feeding them to Recognizer one by one. smoothed: SmoothedScores.of the same scores and
    smoothing (average_window_ms, minimum_count), to try many thresholds at the cost of one.

    Only a hop whose top smoothed score passes the threshold can fire, so only those are
    visited; whether a label has re-armed since it fired (its score fell below the threshold
    at some ready hop since) is looked up in the hops where it did."""
    if smoothed is None:
        smoothed = SmoothedScores.of(times, probs, labels, settings)
    threshold = settings.detection_threshold
    top = np.argmax(smoothed.average, axis=1)
    score = smoothed.average[np.arange(len(top)), top]
    candidates = np.flatnonzero(smoothed.ready & (score > threshold))
    below = {}  # label index -> ready hops where its score is under the threshold

    def rearmed(label, since_hop, hop):
        if since_hop < 0:
            return True  # it never fired
        if label not in below:
            below[label] = np.flatnonzero(smoothed.ready
                                          & (smoothed.average[:, label] < threshold))
        hops = below[label]
        j = int(np.searchsorted(hops, since_hop, side="right"))
        return j < len(hops) and hops[j] <= hop

    silence = labels.index(SILENCE_LABEL) if SILENCE_LABEL in labels else -1
    previous, previous_hop, previous_time = silence, -1, -np.inf
    found = []
    for hop, label, time_ms, top_score in zip(candidates.tolist(), top[candidates].tolist(),
                                              smoothed.times[candidates].tolist(),
                                              score[candidates].tolist()):
        first_or_after_silence = previous == silence or previous_time == -np.inf
        since = np.inf if first_or_after_silence else time_ms - previous_time
        if since <= settings.suppression_ms:
            continue
        if label == previous and not (settings.rearm and rearmed(label, previous_hop, hop)):
            continue
        previous, previous_hop, previous_time = label, hop, time_ms
        if label != silence:
            found.append(Detection(time_ms, labels[label], top_score))
    return found


# ---- ground truth and the measures --------------------------------------------------------------
def read_ground_truth(path, with_clips=False):
    """[(label, time_ms)] sorted by time, from `label,time_ms` rows (a header line is allowed:
    the TF example's files have none); with_clips, [(label, time_ms, clip)] with the optional
    third column make_streams.py writes (the clip's file; '' where absent)."""
    try:
        text = read_text(path, "ground truth")
    except OSError as e:
        raise UserError(f"ground truth {path}: {e.strerror or e}") from None
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    if rows and rows[0][:2] == ["label", "time_ms"]:
        rows = rows[1:]
    truth = []
    for row in rows:
        try:
            truth.append((row[0], float(row[1])) + ((row[2] if len(row) > 2 else "",)
                                                    if with_clips else ()))
        except (IndexError, ValueError):
            raise UserError(f"{path}: expected rows label,time_ms, got {row[:3]}") from None
    return sorted(truth, key=lambda t: t[1])


def write_ground_truth(path, truth):
    """`label,time_ms` rows, or `label,time_ms,clip` when truth holds (label, time_ms, clip)."""
    clips = bool(truth) and len(truth[0]) > 2
    f = io.StringIO()
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["label", "time_ms"] + (["clip"] if clips else []))
    for label, time_ms, *clip in truth:
        writer.writerow([label, f"{time_ms:.0f}"] + clip[:1])
    atomic_write_text(path, f.getvalue())
