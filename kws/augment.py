"""Data augmentation on batches of clips: time shift, speed, gain, background noise at a
volume, drawn per clip from a seed so a run can be repeated, applied by one compiled TF function."""

import dataclasses

import numpy as np

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.common import UserError

RANDOM_SEED = 59185


@dataclasses.dataclass
class Augmentation:
    """Training-time augmentation: each kind with a probability and a range."""
    background_frequency: float = 0.8   # probability of mixing in background noise
    background_volume: float = 0.1      # noise gain drawn from U(0, background_volume)
    silence_volume: float = 1.0         # noise gain of silence clips, U(0, silence_volume)
    foreground_frequency: float = 0.0   # probability of scaling the speech
    foreground_volume_min: float = 0.8
    foreground_volume_max: float = 1.2
    time_shift_frequency: float = 1.0   # probability of shifting in time
    time_shift_ms: float = 100.0        # shift drawn from U(-time_shift_ms, time_shift_ms)
    time_shift_mode: str = "pad"        # "pad" (zeros in) or "roll" (circular)
    speed_frequency: float = 0.0        # probability of a speed change (tempo and pitch)
    speed_min: float = 0.9              # speed factor drawn from U(speed_min, speed_max)
    speed_max: float = 1.1

    def __post_init__(self):
        for name in ("background_frequency", "foreground_frequency", "time_shift_frequency",
                     "speed_frequency"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("background_volume", "silence_volume", "time_shift_ms"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.time_shift_ms >= 1000 * CLIP_SAMPLES / SAMPLE_RATE:
            raise UserError(f"time_shift_ms must be shorter than a clip, got {self.time_shift_ms}")
        if not 0 < self.foreground_volume_min <= self.foreground_volume_max:
            raise UserError("need 0 < foreground_volume_min <= foreground_volume_max")
        if not 0.5 <= self.speed_min <= self.speed_max <= 2.0:
            raise UserError("need 0.5 <= speed_min <= speed_max <= 2")
        if self.time_shift_mode not in ("pad", "roll"):
            raise UserError(f"time_shift_mode must be pad or roll, not {self.time_shift_mode!r}")

    @classmethod
    def from_dict(cls, options):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in fields})


def replica_slices(batch, seed, first, count, total):
    """A dataset of `count` elements (batch, seed, (start, end)): the slices of a global batch
    that replicas first..first+count-1 of `total` take, in replica order."""
    import tensorflow as tf

    size = tf.shape(batch[0], out_type=tf.int64)[0]
    replica = tf.data.Dataset.range(first, first + count)
    return replica.map(lambda r: (batch, seed, (r * size // total, (r + 1) * size // total)))


def augment_batch(clips, generated_silence, seed, noise, augmentation=None, scale=1.0, part=None):
    """Scale, speed up or slow down, shift and add noise to a batch of clips [B, 16000] (int16
    rows of the cache become floats times `scale`): augmentation_draws, then
    apply_augmentation. Random draws come from `seed` alone, so a batch is the same whenever it
    is made. Silence clips made from noise (generated_silence) start from zeros and always get
    noise at U(0, silence_volume); with augmentation=None only they are touched (volume U(0,
    1)), which keeps evaluation repeatable.

    part=(start, end) makes rows start..end-1 only, exactly as they are in the whole batch (the
    draws are made for every row, the work for those rows alone): one replica's share of a
    global batch under tf.distribute.
    """
    bank = noise if isinstance(noise, NoiseBank) else NoiseBank(noise)
    first, stop = (0, len(clips)) if part is None else (int(part[0]), int(part[1]))
    draws = augmentation_draws(len(clips), generated_silence, seed, bank, augmentation, scale)
    mode = shift_mode(augmentation)
    return apply_augmentation(np.asarray(clips)[first:stop], *(d[first:stop] for d in draws),
                              bank.samples, mode).numpy()


def shift_mode(augmentation):
    """How an Augmentation shifts ("pad" without one: evaluation does not shift)."""
    return augmentation.time_shift_mode if augmentation is not None else "pad"


class NoiseBank:
    """Noise recordings end to end in one float32 array, so that a batch's noise is one gather
    (apply_augmentation); one shorter than a clip is repeated to a clip's length, as
    AudioProcessor loads them (XLA would clamp an index past its end into the next one); no
    recordings gives one silent clip that is never mixed in."""

    def __init__(self, recordings):
        recordings = [np.resize(np.asarray(r, np.float32), max(len(r), CLIP_SAMPLES))
                      for r in recordings if len(r)]
        self.lengths = np.array([len(r) for r in recordings], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.samples = (np.concatenate(recordings) if recordings
                        else np.zeros(CLIP_SAMPLES, np.float32))
        if len(self.samples) > np.iinfo(np.int32).max:
            raise UserError(f"{len(self.samples) / SAMPLE_RATE / 3600:.0f} hours of noise "
                            "recordings in all: at most 37 fit the augmentation's index")

    def __len__(self):
        return len(self.lengths)


def augmentation_draws(batch, generated_silence, seed, bank, augmentation=None, scale=1.0):
    """The random part of augment_batch, for every row of a batch, from `seed` alone: (gain,
    speed, noise volume) float32 [batch] and (shift, noise start in bank.samples) int32
    [batch]."""
    rng = np.random.default_rng([RANDOM_SEED, int(seed) & (2**63 - 1)])
    aug = augmentation
    generated_silence = np.asarray(generated_silence, bool)
    gain = np.full(batch, scale, np.float32)
    gain[generated_silence] = 0.0
    speed = np.ones(batch, np.float32)
    shifts = np.zeros(batch, np.int64)
    if aug is not None and aug.foreground_frequency > 0:
        draw = rng.uniform(aug.foreground_volume_min, aug.foreground_volume_max, batch)
        gain *= np.where(rng.random(batch) < aug.foreground_frequency, draw, 1.0)
    if aug is not None and aug.speed_frequency > 0:
        chosen = np.flatnonzero(rng.random(batch) < aug.speed_frequency)
        speed[chosen] = rng.uniform(aug.speed_min, aug.speed_max, len(chosen))
    if aug is not None and aug.time_shift_ms > 0 and aug.time_shift_frequency > 0:
        limit = int(SAMPLE_RATE * aug.time_shift_ms / 1000)
        shifts = rng.integers(-limit, limit + 1, batch)
        shifts[rng.random(batch) >= aug.time_shift_frequency] = 0
    volume = rng.uniform(0.0, 1.0 if aug is None else aug.silence_volume, batch)
    if aug is not None:
        speech = rng.uniform(0.0, aug.background_volume, batch)
        speech[rng.random(batch) >= aug.background_frequency] = 0.0
        volume = np.where(generated_silence, volume, speech)
    else:
        volume = np.where(generated_silence, volume, 0.0)
    which = rng.integers(0, max(len(bank), 1), batch)
    starts = rng.random(batch)
    if len(bank):
        room = bank.lengths[which] - CLIP_SAMPLES + 1
        start = bank.offsets[which] + (starts * room).astype(np.int64)
    else:
        start, volume = np.zeros(batch, np.int64), np.zeros(batch)
    return (gain, speed, volume.astype(np.float32), shifts.astype(np.int32),
            start.astype(np.int32))


def apply_augmentation(clips, gain, speed, volume, shift, noise_start, noise, mode="pad"):
    """The arithmetic of augment_batch, a tf.Tensor float32 [B, T] from clips [B, T] (int16 or
    float32) and one draw per row (augmentation_draws): row = clip(gain * speed_changed(clip)
    shifted by `shift` samples + volume * noise[noise_start:][:T], -1, 1). The speed change
    plays a clip `speed` times faster (pitch and tempo, as Kaldi's speed perturbation) about
    its centre by linear interpolation, zeros beyond its ends; the shift lets zeros in ("pad")
    or wraps ("roll"). One XLA-compiled TensorFlow function (a Python loop over rows cost twice
    the CPU, which on a small machine the train step waits for); it runs inside tf.data and
    eagerly alike."""
    if mode not in _APPLY_MODES:
        raise UserError(f"time_shift_mode must be pad or roll, not {mode!r}")
    return _compiled_apply(mode)(clips, gain, speed, volume, shift, noise_start, noise)


_APPLY_MODES = ("pad", "roll")


_COMPILED_APPLY = {}


def _compiled_apply(mode):
    import tensorflow as tf

    if mode in _COMPILED_APPLY:
        return _COMPILED_APPLY[mode]

    def apply(clips, gain, speed, volume, shift, noise_start, noise):
        x = tf.cast(clips, tf.float32)
        length = tf.shape(x)[1]
        k = tf.range(length)[None, :]
        source = k - shift[:, None]
        if mode == "roll":
            source = tf.math.floormod(source, length)
        inside = (source >= 0) & (source < length)
        centre = tf.cast(length, tf.float32) / 2
        position = (tf.cast(source, tf.float32) - centre) * speed[:, None] + centre
        below = tf.floor(position)
        weight = position - below
        last = length - 1
        j = tf.clip_by_value(tf.cast(below, tf.int32), 0, last)
        a = tf.gather(x, j, batch_dims=1)
        b = tf.gather(x, tf.minimum(j + 1, last), batch_dims=1)
        valid = inside & (position >= 0) & (position <= tf.cast(last, tf.float32))
        row = tf.where(valid, a + (b - a) * weight, 0.0) * gain[:, None]
        row += tf.gather(noise, noise_start[:, None] + k) * volume[:, None]
        return tf.clip_by_value(row, -1.0, 1.0)

    _COMPILED_APPLY[mode] = tf.function(apply, jit_compile=True, reduce_retracing=True)
    return _COMPILED_APPLY[mode]
