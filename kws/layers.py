"""The Keras layers inside every model: the feature front ends (raw audio in), SpecAugment and
FrequencyWarp (training only), SubSpectralNorm and the pieces the architectures share. Registered
under the package "kws", so checkpoints saved when they lived in model.py load unchanged.
kws/frontend.py is their numpy twin for the Pi."""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.common import UserError
from kws.pack import GREY_CENTRE, GREY_OFFSET, GREY_SCALE, GREY_SPREAD, LOG_OFFSET, PACK_CHANNELS

BN_MOMENTUM = 0.9  # 0.99 lags too far behind the weights in short runs and collapses evaluation


@keras.saving.register_keras_serializable(package="kws")
class TimeSlices(layers.Layer):
    """Cut [batch, samples] into overlapping frames [batch, frames, frame_length], 'same' padding.

    This is the winner's `overlapping_time_slice_stack` (tf.extract_image_patches, SAME) done with
    a pad and tf.signal.frame, which TFLite runs as PAD + GATHER.
    """

    def __init__(self, frame_length=40, frame_step=20, **kwargs):
        super().__init__(**kwargs)
        self.frame_length = int(frame_length)
        self.frame_step = int(frame_step)

    def _padding(self, num_samples):
        frames = -(-num_samples // self.frame_step)
        total = max((frames - 1) * self.frame_step + self.frame_length - num_samples, 0)
        return total // 2, total - total // 2

    def call(self, x):
        left, right = self._padding(x.shape[-1])
        x = tf.pad(x, [[0, 0], [left, right]])
        return tf.signal.frame(x, self.frame_length, self.frame_step)

    def compute_output_shape(self, input_shape):
        frames = -(-input_shape[-1] // self.frame_step)
        return (input_shape[0], frames, self.frame_length)

    def get_config(self):
        return {**super().get_config(), "frame_length": self.frame_length,
                "frame_step": self.frame_step}


def _split(n):
    """The divisor of n closest to (and not above) sqrt(n): the two-stage DFT's inner size."""
    return max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)


def dft_power_constants(window, num_bins):
    """Constants of a two-stage (Cooley-Tukey) DFT of a Hann-windowed frame of `window` samples.

    With window = n1 * n2 (n1 = _split(window)), sample index n = n2 * a + b (a < n1, b < n2)
    and bin k = c + n1 * d (c < n1, d < k2):
        X[k] = sum_b W_N^(b k) sum_a x[n2 a + b] W_n1^(a c)        (W_m = exp(-2 pi i / m))
    Stage 1 is one shared [n1 -> 2 n1] real matmul (the inner n1-point DFT, re and im); stage 2
    is, for each c, a [2 n2 -> 2 k2] real matmul that applies the twiddles and the n2-point DFT
    together. Returns (hann [n1, n2], stage1 [n1, 2 n1], stage2 [n1, 2 n2, 2 k2], bin_of
    [n1, k2]: the DFT bin of each output, or -1 past num_bins).
    """
    n1 = _split(window)
    n2 = window // n1
    k2 = (num_bins - 1) // n1 + 1
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)
    a = np.arange(n1)
    angle = 2 * np.pi * np.outer(a, a) / n1
    stage1 = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)
    stage2 = np.zeros((n1, 2 * n2, 2 * k2))
    bin_of = np.full((n1, k2), -1)
    b = np.arange(n2)[:, None]
    for c in range(n1):
        k = c + n1 * np.arange(k2)[None, :]
        theta = 2 * np.pi * b * k / window
        # (re + i im) * (cos - i sin): re' = re cos + im sin, im' = im cos - re sin
        stage2[c, :n2, :k2], stage2[c, n2:, :k2] = np.cos(theta), np.sin(theta)
        stage2[c, :n2, k2:], stage2[c, n2:, k2:] = -np.sin(theta), np.cos(theta)
        bin_of[c] = np.where(k[0] < num_bins, k[0], -1)
    return hann.reshape(n1, n2), stage1, stage2, bin_of


@keras.saving.register_keras_serializable(package="kws")
class LogMel(layers.Layer):
    """Log-mel spectrogram of raw audio: [batch, samples] -> [batch, frames, num_mel_bins].

    frames = 1 + (samples - window) // hop, as the TF tutorial (98 for 30 ms / 10 ms on 1 s).
    Hann window, DFT length = window (480 points, 241 bins for 30 ms), HTK mel filters. The DFT
    is two small matmuls (see `dft_power_constants`): exact to float rounding, and in TFLite it
    is builtin FULLY_CONNECTED / BATCH_MATMUL / TRANSPOSE ops: in TFLite (XNNPACK, x86) 2x faster
    than tf.signal.stft's RFFT2D, with 5x fewer multiplies than a plain DFT matmul.
    Output = (log(mel + log_offset) - norm_mean) / norm_std with fixed scalars; the defaults put
    real speech at roughly zero mean and unit variance, so SpecAugment masks can fill with 0.
    `power=2` uses the power spectrum (log-mel), `power=1` the magnitude (as the tutorial MFCC).
    """

    def __init__(self, num_mel_bins=40, window_ms=30.0, hop_ms=10.0, lower_hz=20.0,
                 upper_hz=7600.0, power=2.0, log_offset=1e-6, norm_mean=-5.5, norm_std=5.0,
                 sample_rate=SAMPLE_RATE, **kwargs):
        super().__init__(**kwargs)
        self.num_mel_bins = int(num_mel_bins)
        self.window_ms = float(window_ms)
        self.hop_ms = float(hop_ms)
        self.sample_rate = int(sample_rate)
        self.window = int(round(self.sample_rate * self.window_ms / 1000))
        self.hop = int(round(self.sample_rate * self.hop_ms / 1000))
        self.lower_hz = float(lower_hz)
        self.upper_hz = float(upper_hz)
        self.power = float(power)
        self.log_offset = float(log_offset)
        self.norm_mean = float(norm_mean)
        self.norm_std = float(norm_std)
        if self.power not in (1.0, 2.0):
            raise ValueError(f"power must be 1 or 2, got {power}")
        if self.window < 2 or self.hop <= 0:
            raise ValueError("window and hop must be positive")
        if not 0 <= self.lower_hz < self.upper_hz <= self.sample_rate / 2:
            raise ValueError("need 0 <= lower_hz < upper_hz <= sample_rate / 2")
        self.num_bins = self.window // 2 + 1
        # the DFT computes only the bins up to the last one a mel filter weighs (half of them
        # for the pack's 0-4 kHz): the output is the same, the two big matmuls shrink
        self.dft_bins = int(np.nonzero(self.mel_matrix().any(axis=1))[0].max()) + 1
        self.n1 = _split(self.window)
        self.n2 = self.window // self.n1
        self.k2 = (self.dft_bins - 1) // self.n1 + 1

    def stream_constants(self):
        """The arrays and scalars kws.frontend.FrontEnd needs to compute these features in numpy,
        as saved in NAME_stream.npz."""
        return {"window": self.window, "hop": self.hop, "power": self.power,
                "log_offset": self.log_offset, "mel": self.mel_matrix().astype(np.float32),
                "frames": self.num_frames(CLIP_SAMPLES), **self._feature_constants()}

    def _feature_constants(self):
        return {"norm_mean": self.norm_mean, "norm_std": self.norm_std}

    def mel_matrix(self):
        """[num_bins, num_mel_bins], the mel filters over the DFT bins from 0 Hz to Nyquist."""
        return tf.signal.linear_to_mel_weight_matrix(
            self.num_mel_bins, self.num_bins, self.sample_rate, self.lower_hz,
            self.upper_hz).numpy()

    def build(self, input_shape):
        hann, stage1, stage2, bin_of = dft_power_constants(self.window, self.dft_bins)
        mel = self.mel_matrix()
        # Mel rows in stage-2 output order; with power=2 the re^2 and im^2 halves both map to
        # the bin's row, so the matmul does the re^2 + im^2 sum for free.
        rows = np.where(bin_of[..., None] >= 0, mel[np.maximum(bin_of, 0)], 0.0)
        if self.power == 2.0:
            rows = np.concatenate([rows, rows], axis=1)
        constant = lambda a: tf.constant(np.asarray(a, dtype=np.float32))  # noqa: E731
        self._hann, self._stage1, self._stage2 = constant(hann), constant(stage1), constant(stage2)
        self._mel = constant(rows.reshape(-1, self.num_mel_bins))
        self.built = True

    def num_frames(self, num_samples=CLIP_SAMPLES):
        return 1 + (num_samples - self.window) // self.hop

    def mel_spectrum(self, x):
        """[batch, samples] -> mel power (or magnitude) [batch, frames, mels]."""
        frames = self.num_frames(x.shape[-1])
        n1, n2, k2 = self.n1, self.n2, self.k2
        y = tf.signal.frame(x, self.window, self.hop)                   # [B, F, N]
        y = tf.reshape(y, [-1, n1, n2]) * self._hann                    # [BF, n1, n2]
        y = tf.matmul(tf.transpose(y, [0, 2, 1]), self._stage1)         # [BF, n2, 2 n1]
        y = tf.reshape(tf.transpose(tf.reshape(y, [-1, n2, 2, n1]), [3, 0, 2, 1]),
                       [n1, -1, 2 * n2])                                # [n1, BF, 2 n2]
        y = tf.square(tf.matmul(y, self._stage2))                       # [n1, BF, 2 k2]
        if self.power == 1.0:
            y = tf.sqrt(tf.reduce_sum(tf.reshape(y, [n1, -1, 2, k2]), axis=2))
        y = tf.reshape(tf.transpose(y, [1, 0, 2]), [-1, frames, y.shape[0] * y.shape[-1]])
        return tf.matmul(y, self._mel)

    def log_mel(self, x):
        return tf.math.log(self.mel_spectrum(x) + self.log_offset)

    def call(self, x):
        return (self.log_mel(x) - self.norm_mean) * (1.0 / self.norm_std)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_frames(input_shape[-1]), self.num_mel_bins)

    def macs(self, num_samples=CLIP_SAMPLES):
        """Window + stage 1 + stage 2 + squares + mel matmul, per frame."""
        n1, n2, k2 = self.n1, self.n2, self.k2
        outputs = n1 * 2 * k2
        per_frame = (self.window + n2 * n1 * 2 * n1 + n1 * 2 * n2 * 2 * k2 + outputs
                     + (outputs if self.power == 2.0 else outputs // 2) * self.num_mel_bins)
        return self.num_frames(num_samples) * per_frame

    def get_config(self):
        return {**super().get_config(), "num_mel_bins": self.num_mel_bins,
                "window_ms": self.window_ms, "hop_ms": self.hop_ms,
                "lower_hz": self.lower_hz, "upper_hz": self.upper_hz, "power": self.power,
                "log_offset": self.log_offset, "norm_mean": self.norm_mean,
                "norm_std": self.norm_std, "sample_rate": self.sample_rate}


@keras.saving.register_keras_serializable(package="kws")
class MFCC(LogMel):
    """MFCC of raw audio: log-mel (magnitude, 20-4000 Hz as the TF tutorial) then an orthonormal
    DCT-II: [batch, samples] -> [batch, frames, num_coefficients].

    The output is the DCT of log(mel + offset), divided by `mfcc_scale` (the log-mel
    normalisation is not applied: c0 carries the loudness, the others are zero-mean already).
    """

    def __init__(self, num_coefficients=40, num_mel_bins=40, lower_hz=20.0, upper_hz=4000.0,
                 power=1.0, log_offset=1e-6, mfcc_scale=4.0, **kwargs):
        kwargs.pop("norm_mean", None)
        kwargs.pop("norm_std", None)
        super().__init__(num_mel_bins=num_mel_bins, lower_hz=lower_hz, upper_hz=upper_hz,
                         power=power, log_offset=log_offset, **kwargs)
        self.num_coefficients = int(num_coefficients)
        self.mfcc_scale = float(mfcc_scale)
        if not 0 < self.num_coefficients <= self.num_mel_bins:
            raise ValueError("num_coefficients must be in 1..num_mel_bins")
        self._dct = None

    def build(self, input_shape):
        super().build(input_shape)
        m, k = self.num_mel_bins, self.num_coefficients
        n = np.arange(m)[:, None]
        basis = np.cos(np.pi / m * (n + 0.5) * np.arange(k)[None, :]) * np.sqrt(2.0 / m)
        basis[:, 0] /= np.sqrt(2.0)
        self._dct = tf.constant((basis / self.mfcc_scale).astype(np.float32))

    def call(self, x):
        return tf.tensordot(self.log_mel(x), self._dct, 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_frames(input_shape[-1]), self.num_coefficients)

    def macs(self, num_samples=CLIP_SAMPLES):
        extra = self.num_frames(num_samples) * self.num_mel_bins * self.num_coefficients
        return super().macs(num_samples) + extra

    def _feature_constants(self):  # the layer's own DCT matrix, scale included
        if self._dct is None:
            self.build((None, CLIP_SAMPLES))
        return {"dct": np.asarray(self._dct, np.float32)}

    def get_config(self):
        config = super().get_config()
        config.pop("norm_mean")
        config.pop("norm_std")
        return {**config, "num_coefficients": self.num_coefficients,
                "mfcc_scale": self.mfcc_scale}


@keras.saving.register_keras_serializable(package="kws")
class SpecAugment(layers.Layer):
    """SpecAugment-style masks on [batch, frames, bins] features, during training only.

    Each clip gets `time_masks` masks of 0..time_width frames and `freq_masks` masks of
    0..freq_width bins, filled with 0 (the mean of the normalised features). At inference the
    layer is the identity and leaves no op in a TFLite graph.
    """

    def __init__(self, time_masks=2, time_width=10, freq_masks=2, freq_width=5, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.time_masks = int(time_masks)
        self.time_width = int(time_width)
        self.freq_masks = int(freq_masks)
        self.freq_width = int(freq_width)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _mask(self, batch, length, count, width):
        """[batch, length] float mask, 0 inside `count` random spans of 0..width positions."""
        if count <= 0 or width <= 0:
            return None
        widths = ops.floor(keras.random.uniform(
            (batch, count), 0, width + 1, seed=self.seed_generator))
        starts = ops.floor(keras.random.uniform(
            (batch, count), 0, 1, seed=self.seed_generator) * (length - widths + 1))
        positions = ops.cast(ops.arange(length), "float32")[None, None, :]
        inside = ops.logical_and(positions >= starts[..., None],
                                 positions < (starts + widths)[..., None])
        return 1.0 - ops.max(ops.cast(inside, "float32"), axis=1)

    def call(self, x, training=None):
        if not training:
            return x
        batch = ops.shape(x)[0]
        time_mask = self._mask(batch, x.shape[1], self.time_masks, self.time_width)
        freq_mask = self._mask(batch, x.shape[2], self.freq_masks, self.freq_width)
        if time_mask is not None:
            x = x * time_mask[:, :, None]
        if freq_mask is not None:
            x = x * freq_mask[:, None, :]
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "time_masks": self.time_masks,
                "time_width": self.time_width, "freq_masks": self.freq_masks,
                "freq_width": self.freq_width, "seed": self.seed}


@keras.saving.register_keras_serializable(package="kws")
class FrequencyWarp(layers.Layer):
    """Vocal tract length perturbation on [batch, frames, bands] mel features, during training
    only: each clip's spectrum is stretched along frequency by a factor drawn from
    [1 - max_warp, 1 + max_warp], as a longer or shorter vocal tract moves a speaker's formants.
    Band k takes the feature at its centre frequency divided by the factor (HTK mel bands over
    lower_hz..upper_hz, linear between bands; the edge band stands in beyond them). It reaches
    the spectrogram pack's images too, which no audio augmentation touches. At inference it is
    the identity.
    """

    def __init__(self, max_warp=0.1, lower_hz=0.0, upper_hz=4000.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.max_warp = float(max_warp)
        self.lower_hz = float(lower_hz)
        self.upper_hz = float(upper_hz)
        if not 0 <= self.max_warp < 1:
            raise ValueError(f"max_warp must be in [0, 1), got {self.max_warp:g}")
        if not 0 <= self.lower_hz < self.upper_hz:
            raise ValueError("need 0 <= lower_hz < upper_hz")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def _mel(hz):
        return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)

    def build(self, input_shape):
        self.bands = int(input_shape[-1])
        edges = np.linspace(self._mel(self.lower_hz), self._mel(self.upper_hz), self.bands + 2)
        self._mel_low, self._mel_step = float(edges[0]), float(edges[1] - edges[0])
        self._centre_hz = (700.0 * np.expm1(edges[1:-1] / 1127.0)).astype(np.float32)

    def source_positions(self, factor):
        """[batch, bands] fractional band index each output band reads, for factors [batch, 1]."""
        source_hz = self._centre_hz[None, :] / factor
        mel = 1127.0 * tf.math.log1p(source_hz / 700.0)
        return tf.clip_by_value((mel - self._mel_low) / self._mel_step - 1.0, 0.0,
                                self.bands - 1.0)

    def warp(self, x, factor):
        position = self.source_positions(factor)
        low = tf.floor(position)
        frac = (position - low)[:, None, :]
        low = tf.cast(low, "int32")
        high = tf.minimum(low + 1, self.bands - 1)
        below = tf.gather(x, low, axis=2, batch_dims=1)
        above = tf.gather(x, high, axis=2, batch_dims=1)
        return below + frac * (above - below)

    def call(self, x, training=None):
        if not training or self.max_warp == 0:
            return x
        factor = keras.random.uniform((ops.shape(x)[0], 1), 1.0 - self.max_warp,
                                      1.0 + self.max_warp, seed=self.seed_generator)
        return self.warp(x, factor)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_warp": self.max_warp, "lower_hz": self.lower_hz,
                "upper_hz": self.upper_hz, "seed": self.seed}


@keras.saving.register_keras_serializable(package="kws")
class SubSpectralNorm(layers.Layer):
    """Batch norm with separate statistics per (frequency sub-band, channel) on [B, T, F, C].

    From BC-ResNet (Chang et al. 2021). At inference it is one multiply and one add with
    [F, C] constants, so it folds away in TFLite like a plain batch norm.
    """

    def __init__(self, subbands=5, momentum=BN_MOMENTUM, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.subbands = int(subbands)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        freq, channels = input_shape[2], input_shape[3]
        self.subbands = max(s for s in range(1, self.subbands + 1) if freq % s == 0)
        shape = (self.subbands, channels)
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=shape, initializer="zeros", trainable=False,
                                           name="moving_mean")
        self.moving_variance = self.add_weight(shape=shape, initializer="ones", trainable=False,
                                               name="moving_variance")
        self.built = True

    def call(self, x, training=None):
        _, time, freq, channels = x.shape
        if training:
            grouped = ops.reshape(x, (-1, time, self.subbands, freq // self.subbands, channels))
            mean = ops.mean(grouped, axis=(0, 1, 3))
            variance = ops.var(grouped, axis=(0, 1, 3))
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1 - m))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        scale = self.gamma * ops.rsqrt(variance + self.epsilon)
        shift = self.beta - mean * scale
        repeat = freq // self.subbands
        return x * ops.repeat(scale, repeat, axis=0) + ops.repeat(shift, repeat, axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "subbands": self.subbands, "momentum": self.momentum,
                "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="kws")
class FrequencySubsample(layers.Layer):
    """Every `stride`-th frequency bin of [B, T, F, C], from bin `offset`.

    TensorFlow's depthwise kernel refuses unequal row and column strides unless oneDNN is on
    (AMD, ARM and GPUs have it off), so a frequency-strided depthwise conv is built as a stride-1
    conv followed by this slice, which picks exactly the outputs the strided conv would compute.
    """

    def __init__(self, stride=2, offset=0, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)
        self.offset = int(offset)

    def call(self, x):
        return x[:, :, self.offset::self.stride, :]

    def compute_output_shape(self, input_shape):
        b, t, f, c = input_shape
        return (b, t, None if f is None else len(range(self.offset, f, self.stride)), c)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "offset": self.offset}


@keras.saving.register_keras_serializable(package="kws")
class AttentionMaxPool(layers.Layer):
    """seed195's attention: weights [B, T] times features [B, T, C], then max over time."""

    def call(self, inputs):
        features, weights = inputs
        return ops.max(features * weights[:, :, None], axis=1)

    def compute_output_shape(self, input_shapes):
        features, _ = input_shapes
        return (features[0], features[2])


@keras.saving.register_keras_serializable(package="kws")
class PackFeatures(LogMel):
    """The feature domain of the published Speech Commands v0.02 spectrograms (kws/pack.py):
    [batch, samples] -> [batch, 98, 40] for one second.

    40 HTK-mel power bands over 0-4000 Hz of 30 ms Hann frames every 10 ms (the filterbank of
    TensorFlow's audio microfrontend, whose channel triangles are these), then the pack's grey
    level clip(grey_scale * log(power + log_offset) + grey_offset, 0, 255) with constants fitted
    by fit_frontend.py on paired clips of training speakers, then (grey - 128) / 64 so that real
    speech is roughly zero-mean, unit-scale. A pack image x (uint8) is the same feature as
    (x - 128) / 64: kws.pack.grey_to_features.
    """

    def __init__(self, grey_scale=GREY_SCALE, grey_offset=GREY_OFFSET, log_offset=LOG_OFFSET,
                 **kwargs):
        for fixed in ("norm_mean", "norm_std", "power", "lower_hz", "upper_hz", "num_mel_bins",
                      "window_ms", "hop_ms"):
            kwargs.pop(fixed, None)
        super().__init__(num_mel_bins=PACK_CHANNELS, window_ms=30.0, hop_ms=10.0, lower_hz=0.0,
                         upper_hz=4000.0, power=2.0, log_offset=log_offset, **kwargs)
        self.grey_scale = float(grey_scale)
        self.grey_offset = float(grey_offset)

    def call(self, x):
        grey = tf.clip_by_value(self.grey_scale * self.log_mel(x) + self.grey_offset, 0.0, 255.0)
        return (grey - GREY_CENTRE) * (1.0 / GREY_SPREAD)

    def _feature_constants(self):  # the spectrogram pack's grey levels
        return {"grey": np.array([self.grey_scale, self.grey_offset], np.float64)}

    def get_config(self):
        config = super().get_config()
        for fixed in ("norm_mean", "norm_std", "power", "lower_hz", "upper_hz", "num_mel_bins",
                      "window_ms", "hop_ms"):
            config.pop(fixed)
        return {**config, "grey_scale": self.grey_scale, "grey_offset": self.grey_offset}


class PackOrAudio(layers.Layer):
    """Training a pack model: a batch is either audio clips (through the model's PackFeatures
    layer, inside the train step, where the step's threads share its cost) or pack images,
    which are already features. `from_audio` [batch] bool says which (the whole batch alike)."""

    def __init__(self, front, **kwargs):
        super().__init__(**kwargs)
        self.front = front

    def call(self, audio, image, from_audio):
        return ops.cond(from_audio[0], lambda: self.front(audio), lambda: image)

    def compute_output_shape(self, audio_shape, image_shape, from_audio_shape):
        return image_shape


def front_end_layer(model, kind=LogMel):
    """The model's feature front end, found by type: a LogMel (so also MFCC or PackFeatures), or
    only `kind`. None when it has none (the raw-audio models) and kind is the default."""
    for layer in model.layers:
        if isinstance(layer, kind):
            return layer
    if kind is LogMel:
        return None
    raise LookupError(f"{model.name} has no {kind.__name__} layer")


def pack_trainer(net):
    """The model that trains a pack model: inputs (audio [B, 16000], pack image features
    [B, 98, 40], from_audio [B] bool), output the model's logits. Its layers are the model's, so
    training it trains the model (which stays audio in, and is what is saved)."""
    try:
        front = front_end_layer(net, PackFeatures)
    except LookupError:
        raise UserError("--pack needs a model with the pack front end (e.g. --model_options "
                        "'{\"features\": \"pack\"}' for edge_tcs)") from None
    body = keras.Model(front.output, net.output, name=net.name + "_body")
    audio = keras.Input(net.input_shape[1:], name="audio")
    image = keras.Input(front.output.shape[1:], name="pack_image")
    from_audio = keras.Input((), dtype="bool", name="from_audio")
    features = PackOrAudio(front, name="pack_or_audio")(audio, image, from_audio)
    return keras.Model([audio, image, from_audio], body(features), name=net.name + "_trainer")


FRONTEND_LAYERS = (LogMel, MFCC)
