"""Score long audio streams with a model and measure its recognizer on them, in this process:
what streaming_accuracy.py runs and what the recipes (demo.py, real.py) call. The figures are
typed (kws.stream_metrics); `StreamReport.as_json()` is streaming_accuracy.py's --metrics_json.

    report = measure_streams(["model_int8.tflite"], "test.wav", "test_negative.wav",
                             load_settings("model_int8.tflite"), sweep=True)
    print(report.result.positive.detection_rate, report.chosen)
"""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time

import numpy as np
import soundfile as sf

from kws import SAMPLE_RATE
from kws.audio import stream_wav
from kws.common import UserError, atomic_path
from kws.labels import COMPETITION_WORDS
from kws.runtime import load_streaming_models
from kws.stream_metrics import TfExampleFigures, WakewordFigures
from kws.streaming import (
    SmoothedScores,
    StreamSettings,
    read_ground_truth,
    recognize,
    save_settings,
    score_stream,
    tf_example_settings,
)

# Finest near the top: label smoothing (0.05) caps a model's probability near 0.955, where the
# detection rate falls fastest, and a 0.01 step there chose 0.95 over a 0.945 that kept the budget.
# A model trained without it reaches 1 (an int8 softmax 255/256 = 0.99609): steps up to 0.999.
SWEEP = np.round(np.concatenate([np.arange(0.30, 0.89, 0.05), np.arange(0.90, 0.9951, 0.005),
                                 np.arange(0.996, 0.9991, 0.001)]), 3)
# The moving averages a recipe's sweep tries with every threshold (ms), the pair chosen on the
# validation streams: a longer window lets a lower threshold through at the same false accepts,
# a shorter one asks a short word for fewer confident hops. The lookalike teachers' validation
# chose 500 or 750 ms; 100 and 1000 ms never paid (BENCHMARKS.md, session 23).
SMOOTHING_WINDOWS_MS = (200.0, 300.0, 500.0, 750.0)


@dataclasses.dataclass
class ScoredStream:
    """One stream's ground truth and the model's scores of every hop."""
    wav: str
    truth: list
    times: np.ndarray
    probs: np.ndarray
    seconds: float
    cpu_seconds: float
    smoothing: dict = dataclasses.field(default_factory=dict, repr=False)

    def smoothed(self, labels, settings):
        """SmoothedScores for settings' smoothing, computed once for all thresholds."""
        key = (settings.average_window_ms, settings.minimum_count)
        if key not in self.smoothing:
            self.smoothing[key] = SmoothedScores.of(self.times, self.probs, labels, settings)
        return self.smoothing[key]


@dataclasses.dataclass
class StreamResult:
    """The figures of one recognizer over a positive stream (and a negative one)."""
    settings: StreamSettings
    tf_example: TfExampleFigures
    positive: WakewordFigures
    negative: WakewordFigures | None
    detections: list  # (time_ms, label, score) on the positive stream

    def as_json(self):
        record = {"settings": dataclasses.asdict(self.settings),
                  "tf_example": self.tf_example.as_json(), "positive": self.positive.as_json()}
        if self.negative is not None:
            record["negative"] = self.negative.as_json()
        record["detections"] = self.detections
        return record


@dataclasses.dataclass
class SweepPoint:
    threshold: float
    detection_rate: float | None
    false_accepts_per_hour: float | None
    average_window_ms: float | None = None


@dataclasses.dataclass
class StreamReport:
    """Everything streaming_accuracy.py measures; its JSON keys are the field names."""
    model: str
    also_models: list
    wav: str
    negative_wav: str | None
    real_time_factor: float
    hops: int
    result: StreamResult
    tf_example_recognizer: StreamResult | None = None
    sweep: list | None = None  # [SweepPoint]; None: no sweep was asked for
    chosen: SweepPoint | None = None

    def as_json(self):
        record = {"model": self.model, "also_models": self.also_models, "wav": self.wav,
                  "negative_wav": self.negative_wav, "real_time_factor": self.real_time_factor,
                  "hops": self.hops, "result": self.result.as_json()}
        if self.tf_example_recognizer is not None:
            record["tf_example_recognizer"] = self.tf_example_recognizer.as_json()
        if self.sweep is not None:
            record["sweep"] = [dataclasses.asdict(p) for p in self.sweep]
            record["chosen"] = dataclasses.asdict(self.chosen) if self.chosen else None
        return record


def stream_duration_s(path):
    try:
        return sf.info(path).duration
    except Exception as e:
        raise UserError(f"{path}: not readable audio ({e})") from None


def load_stream(model, wav, truth_path, stride_ms, negative=False):
    """Score one stream (truth_path: default WAV's .csv); a positive one must hold a command."""
    truth_path = truth_path or os.path.splitext(wav)[0] + ".csv"
    truth = read_ground_truth(truth_path, with_clips=True)
    if not negative and not any(label in COMPETITION_WORDS for label, _, _ in truth):
        raise UserError(f"{truth_path} names no command word: pass a stream without any as "
                        "--negative_wav")
    t0 = time.process_time()
    times, probs = score_stream(model, stream_wav(wav, SAMPLE_RATE), stride_ms)
    seconds = stream_duration_s(wav)
    cpu_seconds = time.process_time() - t0
    if not len(times):
        raise UserError(f"{wav}: shorter than one second, nothing to score")
    past = [t for _, t, _ in truth if t >= seconds * 1000]
    if past:
        raise UserError(f"{truth_path}: a word at {past[0]:.0f} ms, past the end of {wav} "
                        f"({seconds:.1f} s): is it this stream's ground truth?")
    return ScoredStream(wav, truth, times, probs, seconds, cpu_seconds)


def evaluate(labels, settings, positive, negative, after_ms=1750.0, tolerance_ms=1500.0):
    """The figures of one recognizer over the scored streams (negative may be None)."""
    found = recognize(positive.times, positive.probs, labels, settings,
                      positive.smoothed(labels, settings))
    negative_figures = None
    if negative:
        false_found = recognize(negative.times, negative.probs, labels, settings,
                                negative.smoothed(labels, settings))
        negative_figures = WakewordFigures.of(false_found, negative.truth, negative.seconds,
                                              COMPETITION_WORDS, after_ms)
    return StreamResult(
        settings=settings, tf_example=TfExampleFigures.of(found, positive.truth, tolerance_ms),
        positive=WakewordFigures.of(found, positive.truth, positive.seconds, COMPETITION_WORDS,
                                    after_ms),
        negative=negative_figures, detections=[(d.time_ms, d.label, d.score) for d in found])


def sweep_thresholds(labels, settings, positive, negative, after_ms, tolerance_ms, windows=()):
    """A SweepPoint for every threshold of SWEEP (false accepts: on the negative stream) with
    each moving-average window of `windows` (ms; none given: the settings' own)."""
    points = []
    for window in windows or (settings.average_window_ms,):
        for threshold in SWEEP:
            s = dataclasses.replace(settings, detection_threshold=float(threshold),
                                    average_window_ms=float(window))
            r = evaluate(labels, s, positive, negative, after_ms, tolerance_ms)
            points.append(SweepPoint(float(threshold), r.positive.detection_rate,
                                     (r.negative or r.positive).false_accepts_per_hour,
                                     s.average_window_ms))
    return points


def choose_threshold(points, target_fa_per_hour):
    """The sweep point that detects most within the false-accept budget (None if none fits);
    of equals, the higher threshold, then the longer window."""
    fits = [p for p in points if p.false_accepts_per_hour <= target_fa_per_hour]
    return max(fits, key=lambda p: (p.detection_rate, p.threshold,
                                    p.average_window_ms or 0)) if fits else None


@dataclasses.dataclass(frozen=True)
class StreamJob:
    """One stream to score: its WAV, its ground truth ('': the WAV's .csv), the stride."""
    wav: str
    truth: str
    stride_ms: float
    negative: bool = False


def score_job(models, labels_path, threads, job):
    """(labels, ScoredStream) of one StreamJob (in a worker process, or in this one)."""
    model, labels = load_streaming_models(models, labels_path, threads, job.stride_ms)
    return labels, load_stream(model, job.wav, job.truth, job.stride_ms, job.negative)


def score_streams(models, jobs, *, labels_path=None, threads=1, workers=1):
    """{job: (labels, ScoredStream)} for every StreamJob, scored by up to `workers` processes
    side by side, the longest first: a stream is one core's work (the model runs hop by hop),
    so the streams of a recipe take half as long on two cores. The scores are the same in any
    process."""
    jobs = list(dict.fromkeys(jobs))
    workers = min(workers, len(jobs))
    if workers <= 1:
        return {job: score_job(models, labels_path, threads, job) for job in jobs}
    longest_first = sorted(jobs, key=lambda j: -stream_duration_s(j.wav) / j.stride_ms)
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {job: pool.submit(score_job, models, labels_path, threads, job)
                   for job in longest_first}
        return {job: futures[job].result() for job in jobs}
    except BaseException:
        # A failed job or a signal must not wait for the other streams to be scored; the
        # executor has no public way to stop its workers before Python 3.14.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def measure_streams(models, wav, negative_wav, settings, *, labels_path=None, threads=1,
                    ground_truth="", negative_ground_truth="", after_ms=1750.0,
                    tolerance_ms=1500.0, also_tf_example=False, sweep=False, sweep_windows=(),
                    target_fa_per_hour=2.0, scored=None):
    """Score the streams with models (several: an averaged ensemble) and measure `settings`,
    and with also_tf_example the TF example's recognizer, and with sweep every threshold (with
    each moving-average window of sweep_windows, ms; none: the settings' own).
    scored: score_streams' result for the same models, for the streams it holds."""
    scored = dict(scored or {})

    def streams_at(stride_ms):
        jobs = [StreamJob(wav, ground_truth, stride_ms)] + (
            [StreamJob(negative_wav, negative_ground_truth, stride_ms, True)]
            if negative_wav else [])
        scored.update(score_streams(models, [j for j in jobs if j not in scored],
                                    labels_path=labels_path, threads=threads))
        labels, pos = scored[jobs[0]]
        return labels, pos, scored[jobs[1]][1] if negative_wav else None

    labels, positive, negative = streams_at(settings.stride_ms)
    streams = [s for s in (positive, negative) if s]
    report = StreamReport(
        model=models[0], also_models=list(models[1:]), wav=wav,
        negative_wav=negative_wav or None,
        real_time_factor=sum(s.cpu_seconds for s in streams) / sum(s.seconds for s in streams),
        hops=len(positive.times),
        result=evaluate(labels, settings, positive, negative, after_ms, tolerance_ms))
    if also_tf_example:
        base = tf_example_settings()
        base_labels, pos, neg = streams_at(base.stride_ms)
        report.tf_example_recognizer = evaluate(base_labels, base, pos, neg, after_ms,
                                                tolerance_ms)
    if sweep:
        report.sweep = sweep_thresholds(labels, settings, positive, negative, after_ms,
                                        tolerance_ms, sweep_windows)
        report.chosen = choose_threshold(report.sweep, target_fa_per_hour)
    return report


def save_chosen(model, report, target_fa_per_hour):
    """Store the report's settings with its chosen threshold (and window) beside the model;
    returns the path."""
    chosen = report.chosen
    window = chosen.average_window_ms
    picked = dataclasses.replace(report.result.settings, detection_threshold=chosen.threshold,
                                 **({} if window is None else {"average_window_ms": window}))
    return save_settings(model, picked, {"chosen_on": [report.wav, report.negative_wav or ""],
                                         "target_fa_per_hour": target_fa_per_hour})


def plot_det(points, path, title, chosen=None):
    """The DET curve of a sweep (miss rate against false accepts per hour) as a PNG: a curve
    for each moving-average window it tried, thresholds marked on the chosen point's."""
    import matplotlib  # heavy, and pyplot must come after use("Agg"): only a plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    windows = list(dict.fromkeys(p.average_window_ms for p in points))
    marked = chosen.average_window_ms if chosen else windows[0]
    for window in windows:
        curve = [p for p in points if p.average_window_ms == window]
        fa = [max(p.false_accepts_per_hour, 0.1) for p in curve]
        miss = [1 - p.detection_rate for p in curve]
        ax.plot(fa, miss, "o-", ms=3, label=None if window is None else f"{window:g} ms average")
        if window != marked:
            continue
        for p, x, y in zip(curve, fa, miss):
            if round(p.threshold * 100) % 10 == 0 or p.threshold >= 0.95:
                ax.annotate(f"{p.threshold:g}", (x, y), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    if len(windows) > 1:
        ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("false accepts per hour (negative stream)")
    ax.set_ylabel("miss rate (command words)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def describe(name, r):
    """Lines that tell one StreamResult."""
    tf, pos, neg = r.tf_example, r.positive, r.negative
    lines = [f"{name}: {pos.detected}/{pos.command_words} command words detected "
             f"({pos.detection_rate:.1%}), {pos.false_accepts} false accepts on the stream"
             + (f"; negative stream: {neg.false_accepts} in {neg.hours:.2f} h = "
                f"{neg.false_accepts_per_hour:.1f} per hour" if neg else "")]
    worst = ((neg and neg.false_accepts_by_clip) or [])[:3]
    if worst:
        lines.append(f"  negative stream: false accepts on {neg.clips_fired_on} of its "
                     f"{neg.distinct_clips} distinct clips, most often on: " + "; ".join(
                         f"{w['heard'] or 'noise'} as {w['fired']} ({w['count']})"
                         for w in worst))
    lines.append(f"  TF example figures: {tf.matched:.1%} matched, {tf.correct:.1%} correct, "
                 f"{tf.wrong:.1%} wrong, {tf.false_positive:.1%} false positive")
    return "\n".join(lines)
