"""The figures of keyword spotting on long audio, typed: what a recognizer's detections score
against a stream's ground truth. To add a stream metric, add a field to the dataclass it belongs
to (WakewordFigures for per-stream wake-word figures, TfExampleFigures for the TF example's) and
compute it in that class's `of` constructor here: streaming_accuracy.py's --metrics_json, the
recipes' summaries and their printouts read these fields.

    figures = WakewordFigures.of(detections, truth, duration_s, COMPETITION_WORDS)
    print(figures.detection_rate, figures.false_accepts_per_hour)

Needs the standard library only.
"""

import bisect
import collections
import dataclasses


@dataclasses.dataclass
class TfExampleFigures:
    """The TF example's figures (accuracy_utils.StreamingAccuracyStats, whole stream), as shares
    of the ground-truth words."""
    ground_truth_words: int
    matched: float
    correct: float
    wrong: float
    false_positive: float

    @classmethod
    def of(cls, found, truth, tolerance_ms=1500.0, clip_ms=1000.0):
        """A detection matches the first ground-truth word within +-tolerance of its window's
        start; correct if the label agrees and that word was not matched before, else wrong;
        unmatched detections are false positives."""
        correct = wrong = false_positive = 0
        matched = []
        for label, time_ms in [(d.label, d.time_ms - clip_ms) for d in found]:
            hit = next(((gl, gt) for gl, gt, *_ in truth if time_ms - tolerance_ms <= gt
                        <= time_ms + tolerance_ms), None)
            if hit is None:
                false_positive += 1
                continue
            if hit[0] == label and hit[1] not in matched:
                correct += 1
            else:
                wrong += 1
            matched.append(hit[1])
        n = max(len(truth), 1)
        return cls(len(truth), len(matched) / n, correct / n, wrong / n, false_positive / n)

    def as_json(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class WakewordFigures:
    """Per-word detection and false accepts per hour on one stream, as wake-word work reports
    them. The clip fields are None (and left out of the JSON) for truth without clips."""
    command_words: int
    detected: int
    detection_rate: float | None  # None: the stream holds no command word
    false_accepts: int
    false_accepts_per_hour: float | None
    hours: float
    miss_rate_by_word: dict
    # One misheard clip placed n times is n false accepts: how many clips fooled it tells how
    # far the rate rests on a few of them.
    distinct_clips: int | None = None
    clips_fired_on: int | None = None
    false_accepts_by_clip: list | None = None  # [{"heard", "fired", "count"}], most first

    @classmethod
    def of(cls, found, truth, duration_s, words, after_ms=1750.0):
        """A command word of the ground truth is detected when a detection of the same label
        lies in [its start, its start + after_ms] (each detection serves one word). Every other
        detection of a command word (the wrong word, a second one, one fired on an unknown word
        or on noise) is a false accept. Detections of `_unknown_` are not commands and count
        for nothing. With truth of (label, time_ms, clip), false accepts are also counted by
        the clip they fired on (the last word that started within after_ms before; '' for
        noise)."""
        words = set(words)
        truth = sorted(truth, key=lambda t: t[1])
        targets = [(w[0], w[1]) for w in truth if w[0] in words]
        used, misses = _match_targets(found, targets, words, after_ms)
        hours = duration_s / 3600
        figures = cls(command_words=len(targets), detected=sum(used),
                      detection_rate=sum(used) / len(targets) if targets else None,
                      false_accepts=len(misses),
                      false_accepts_per_hour=len(misses) / hours if hours else None,
                      hours=hours, miss_rate_by_word=_miss_rates(targets, used))
        if truth and len(truth[0]) > 2:
            by_clip = _false_accepts_by_clip(misses, truth, after_ms)
            figures.distinct_clips = len({w[2] for w in truth if w[2]})
            figures.clips_fired_on = len({heard for heard, _ in by_clip if heard})
            figures.false_accepts_by_clip = [{"heard": heard, "fired": fired, "count": n}
                                             for (heard, fired), n in by_clip.most_common()]
        return figures

    def as_json(self):
        record = dataclasses.asdict(self)
        if self.false_accepts_by_clip is None:
            for name in ("distinct_clips", "clips_fired_on", "false_accepts_by_clip"):
                del record[name]
        return record


def _match_targets(found, targets, words, after_ms):
    """(which targets a detection served, the command-word detections that served none)."""
    used = [False] * len(targets)
    misses = []
    for d in sorted(found, key=lambda d: d.time_ms):
        if d.label not in words:
            continue
        for i, (label, t) in enumerate(targets):
            if not used[i] and label == d.label and t <= d.time_ms <= t + after_ms:
                used[i] = True
                break
        else:
            misses.append(d)
    return used, misses


def _miss_rates(targets, used):
    per_word = {}
    for (label, _), hit in zip(targets, used):
        total, hits = per_word.get(label, (0, 0))
        per_word[label] = (total + 1, hits + hit)
    return {w: 1 - h / n for w, (n, h) in sorted(per_word.items())}


def _false_accepts_by_clip(misses, truth, after_ms):
    """Counter of (clip heard or '' for noise, label fired) over the false accepts."""
    starts = [w[1] for w in truth]
    by_clip = collections.Counter()
    for d in misses:
        j = bisect.bisect_right(starts, d.time_ms) - 1
        heard = truth[j] if j >= 0 and d.time_ms - starts[j] <= after_ms else None
        by_clip[((heard[2] or heard[0]) if heard else "", d.label)] += 1
    return by_clip
