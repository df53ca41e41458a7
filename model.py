"""The model zoo: every model takes raw 16 kHz audio [batch, 16000] and returns logits.

    python model.py --list                               # every model with params and MACs
    python model.py --model seed195 --num_classes 12     # summary, params and MACs of one model
    python model.py --model edge_tcs --option width=1    # builder options as KEY=VALUE
    python model.py --checkpoint checkpoints/smoke/last.keras   # a saved model's labels and stats

Models (the registry `MODELS` is the source of truth; `EDGE_MODEL` names the one we ship):
  seed195        the Kaggle winner's Raspberry Pi model (conv_1d_time_sliced_with_attention):
                 depthwise-separable 1D convs on 40-sample slices of the raw waveform.
  seed106        the same trunk, 64-wide stem and 448-wide top, the ensemble's 32-class model.
  tutorial_conv  the TF speech_commands tutorial's default `conv` model on 40 MFCC.
  ds_cnn_s/_l    Hello Edge DS-CNN S and L on 10 MFCC (40 ms window, 20 ms hop, as the paper).
  edge_tcs       our edge model: a time-channel separable residual net on 40 log-mel bands.
  edge_bcres     BC-ResNet-3 on 40 log-mel: accurate per parameter, but slow in TFLite.

The feature front ends (`LogMel`, `MFCC`, `TimeSlices`) are Keras layers inside the model, so a
checkpoint or a TFLite file is the whole pipeline from samples to logits. The DFT is two small
matmuls (builtin TFLite ops); `tflite_bytes` converts a model to float or int8 TFLite, keeping
the front end float in int8 (see there why).

`model_stats` counts multiply-accumulates per 1 s clip analytically, layer by layer:
  Conv1D/Conv2D   output positions * kernel taps * input channels * filters
  Depthwise       output positions * kernel taps * channels * depth multiplier
  Dense           positions * inputs * units
  LogMel          per frame: window + the two DFT stages + squares + mel matmul, exactly the
                  multiplies the layer does (see LogMel.macs); MFCC adds mels * coefficients
Batch norms (folded into convs at inference), activations, pooling, additions and the attention
weighting are not counted: they are a few percent at most in every model here.
"""

import argparse
import ast
import math
import os

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.common import UserError, run_cli
from kws.pack import GREY_CENTRE, GREY_OFFSET, GREY_SCALE, GREY_SPREAD, LOG_OFFSET, PACK_CHANNELS

BN_MOMENTUM = 0.9  # 0.99 lags too far behind the weights in short runs and collapses evaluation


def _bn(name=None, axis=-1):
    return layers.BatchNormalization(axis=axis, momentum=BN_MOMENTUM, epsilon=1e-3, name=name)


# ----------------------------------------------------------------------------------------------
# Feature front ends


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


def same_padding_offset(size, kernel, stride):
    """The stride-1 'same' output index of the first output of a stride-`stride` 'same' conv."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return (kernel - 1) // 2 - total // 2


def depthwise_freq_strided(x, kernel, freq_stride, name):
    """DepthwiseConv2D((1, kernel), strides=(1, freq_stride), 'same') that runs on every CPU."""
    x = layers.DepthwiseConv2D((1, kernel), padding="same", use_bias=False, name=name)(x)
    if freq_stride == 1:
        return x
    offset = same_padding_offset(x.shape[2], kernel, freq_stride)
    return FrequencySubsample(freq_stride, offset, name=name + "_subsample")(x)


@keras.saving.register_keras_serializable(package="kws")
class AttentionMaxPool(layers.Layer):
    """seed195's attention: weights [B, T] times features [B, T, C], then max over time."""

    def call(self, inputs):
        features, weights = inputs
        return ops.max(features * weights[:, :, None], axis=1)

    def compute_output_shape(self, input_shapes):
        features, _ = input_shapes
        return (features[0], features[2])


# ----------------------------------------------------------------------------------------------
# The winner's raw-waveform models (seed195, seed106)


def _l2(weight):
    return keras.regularizers.L2(weight) if weight else None


def _separable_1d(x, filters, strides, padding, l2, name):
    """Depthwise k3 (no BN between) then 1x1 conv + BN + relu6, as the winner's block."""
    x = layers.DepthwiseConv1D(3, strides=strides, padding=padding, use_bias=False,
                               depthwise_regularizer=_l2(l2), name=name + "_dw")(x)
    x = layers.Conv1D(filters, 1, use_bias=False, kernel_regularizer=_l2(l2),
                      name=name + "_pw")(x)
    x = _bn(name + "_bn")(x)
    return layers.ReLU(max_value=6.0, name=name + "_relu6")(x)


def time_sliced_attention(num_classes, first_filters=128, context_filters=128,
                          stage_filters=(192, 256, 320, 384, 512), attention_bias=True,
                          dropout=0.4, l2=1e-5, name="seed195"):
    """conv_1d_time_sliced_with_attention: 800 slices of 40 samples (hop 20) -> logits.

    Shapes on a 1 s clip: 800 -> conv k3 s2 -> 399 -> context (valid) -> 397 -> five stages of
    (stride 2 'same', k3 'valid'): 197, 97, 47, 22, 9 time steps at the attention head.
    """
    audio = keras.Input((CLIP_SAMPLES,), name="audio")
    x = TimeSlices(40, 20, name="time_slices")(audio)
    x = layers.Conv1D(first_filters, 3, strides=2, use_bias=False, kernel_regularizer=_l2(l2),
                      name="conv0")(x)
    x = _bn("conv0_bn")(x)
    x = layers.ReLU(max_value=6.0, name="conv0_relu6")(x)
    x = _separable_1d(x, context_filters, 1, "valid", l2, "context")
    for i, filters in enumerate(stage_filters):
        x = _separable_1d(x, filters, 2, "same", l2, f"stage{i + 1}_reduce")
        x = _separable_1d(x, filters, 1, "valid", l2, f"stage{i + 1}_context")
    steps = x.shape[1]
    weights = layers.Flatten(name="attention_flatten")(x)
    weights = layers.Dropout(dropout, name="attention_dropout")(weights)
    weights = layers.Dense(steps, activation="softmax", use_bias=attention_bias,
                           name="attention")(weights)
    attended = AttentionMaxPool(name="attention_max")([x, weights])
    pooled = layers.GlobalAveragePooling1D(name="avg_pool")(x)
    x = layers.Concatenate(name="head_concat")([attended, pooled])
    x = layers.Dropout(dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, use_bias=False, kernel_regularizer=_l2(l2),
                          name="logits")(x)
    return keras.Model(audio, logits, name=name)


def seed195(num_classes=12, **options):
    """The Raspberry Pi prize model (checkpoints_195): 128-wide stem, 512-wide last stage."""
    return time_sliced_attention(num_classes, **{"name": "seed195", **options})


def seed106(num_classes=32, **options):
    """Experiment 106 (the ensemble member): 64-wide first conv, 448-wide last stage, 32 classes."""
    defaults = {"first_filters": 64, "stage_filters": (192, 256, 320, 384, 448),
                "attention_bias": False, "name": "seed106"}
    return time_sliced_attention(num_classes, **{**defaults, **options})


# ----------------------------------------------------------------------------------------------
# Baselines on MFCC


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


def pack_trainer(net):
    """The model that trains a pack model: inputs (audio [B, 16000], pack image features
    [B, 98, 40], from_audio [B] bool), output the model's logits. Its layers are the model's, so
    training it trains the model (which stays audio in, and is what is saved)."""
    try:
        front = net.get_layer("pack_features")
    except ValueError:
        raise UserError("--pack needs a model with the pack front end (e.g. --model_options "
                        "'{\"features\": \"pack\"}' for edge_tcs)") from None
    body = keras.Model(front.output, net.output, name=net.name + "_body")
    audio = keras.Input(net.input_shape[1:], name="audio")
    image = keras.Input(front.output.shape[1:], name="pack_image")
    from_audio = keras.Input((), dtype="bool", name="from_audio")
    features = PackOrAudio(front, name="pack_or_audio")(audio, image, from_audio)
    return keras.Model([audio, image, from_audio], body(features), name=net.name + "_trainer")


def _frontend(audio, kind, spec_augment, **frontend):
    """Log-mel or MFCC [B, T, F], then SpecAugment when `spec_augment` is True or a dict of its
    settings (training only)."""
    if kind == "mfcc":
        layer = MFCC(name="mfcc", **frontend)
    elif kind == "pack":
        layer = PackFeatures(name="pack_features", **frontend)
    else:
        layer = LogMel(name="log_mel", **frontend)
    x = layer(audio)
    if spec_augment:
        settings = spec_augment if isinstance(spec_augment, dict) else {}
        x = SpecAugment(name="spec_augment", **settings)(x)
    return x


def _features(audio, kind, spec_augment, **frontend):
    """The front end as a one-channel image [B, T, F, 1] for the 2D models."""
    x = _frontend(audio, kind, spec_augment, **frontend)
    return layers.Reshape((x.shape[1], x.shape[2], 1), name="to_image")(x)


def tutorial_conv(num_classes=12, dropout=0.5, spec_augment=False, features="mfcc", **frontend):
    """The TF speech_commands tutorial's `conv` (cnn-trad-fpool3): 98 x 40 MFCC (30 ms / 10 ms),
    conv 64 @ 20x8 + relu + max-pool 2, conv 64 @ 10x4 + relu, dense to the classes."""
    audio = keras.Input((CLIP_SAMPLES,), name="audio")
    if features == "mfcc":
        frontend = {"num_coefficients": 40, "window_ms": 30.0, "hop_ms": 10.0, **frontend}
    elif features != "pack":  # the pack's 98 x 40 (PackFeatures), the same shape
        raise ValueError(f"features must be 'mfcc' or 'pack', got {features!r}")
    x = _features(audio, features, spec_augment, **frontend)
    x = layers.Conv2D(64, (20, 8), padding="same", activation="relu", name="conv1")(x)
    x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, (10, 4), padding="same", activation="relu", name="conv2")(x)
    x = layers.Dropout(dropout, name="dropout2")(x)
    x = layers.Flatten(name="flatten")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(audio, logits, name="tutorial_conv")


def ds_cnn(num_classes=12, filters=64, first_strides=(2, 2), strides=((1, 1),) * 4,
           dropout=0.0, features="mfcc", spec_augment=False, name="ds_cnn", **frontend):
    """Hello Edge DS-CNN (Zhang et al. 2017, ARM ML-KWS-for-MCU): conv 10x4 + BN + relu, then
    depthwise 3x3 + BN + relu + pointwise + BN + relu blocks, global average pool, dense.

    Default input as the paper: 49 x 10 MFCC (40 ms window, 20 ms hop, 40 mel bands 20-4000 Hz);
    `features="logmel"` uses 49 x 40 log-mel instead, `features="pack"` the spectrogram pack's
    98 x 40 (PackFeatures), so that it can learn from the pack.
    """
    audio = keras.Input((CLIP_SAMPLES,), name="audio")
    if features == "mfcc":
        frontend = {"num_coefficients": 10, "window_ms": 40.0, "hop_ms": 20.0, **frontend}
    elif features == "logmel":
        frontend = {"window_ms": 40.0, "hop_ms": 20.0, **frontend}
    elif features != "pack":
        raise ValueError(f"features must be 'mfcc', 'logmel' or 'pack', got {features!r}")
    x = _features(audio, features, spec_augment, **frontend)
    x = layers.Conv2D(filters, (10, 4), strides=first_strides, padding="same", use_bias=False,
                      name="conv0")(x)
    x = _bn("conv0_bn")(x)
    x = layers.ReLU(name="conv0_relu")(x)
    for i, stride in enumerate(strides):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                   name=f"ds{i + 1}_dw")(x)
        x = _bn(f"ds{i + 1}_dw_bn")(x)
        x = layers.ReLU(name=f"ds{i + 1}_dw_relu")(x)
        x = layers.Conv2D(filters, 1, use_bias=False, name=f"ds{i + 1}_pw")(x)
        x = _bn(f"ds{i + 1}_pw_bn")(x)
        x = layers.ReLU(name=f"ds{i + 1}_pw_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(audio, logits, name=name)


def ds_cnn_s(num_classes=12, **options):
    """DS-CNN S: 64 channels, first conv stride 2x2, 4 DS blocks (ML-KWS `5 64 10 4 2 2 ...`)."""
    return ds_cnn(num_classes, **{"filters": 64, "first_strides": (2, 2),
                                  "strides": ((1, 1),) * 4, "name": "ds_cnn_s", **options})


def ds_cnn_l(num_classes=12, **options):
    """DS-CNN L: 276 channels, first conv stride 2x1, 5 DS blocks, the first with stride 2x2
    (ML-KWS `6 276 10 4 2 1 276 3 3 2 2 ...`)."""
    return ds_cnn(num_classes, **{"filters": 276, "first_strides": (2, 1),
                                  "strides": ((2, 2),) + ((1, 1),) * 4, "name": "ds_cnn_l",
                                  **options})


# ----------------------------------------------------------------------------------------------
# The edge model: BC-ResNet on log-mel


def _bc_block(x, channels, freq_stride, dilation, dropout, subbands, name):
    """Broadcasted residual block (BC-ResNet): a frequency-wise depthwise conv + SubSpectralNorm
    (f2), then the frequency-averaged temporal path (f1: depthwise over time, BN, swish, 1x1,
    channel dropout) broadcast back over frequency and added. Identity shortcut when shapes keep.
    """
    transition = x.shape[-1] != channels or freq_stride != 1
    if x.shape[-1] != channels:
        x = layers.Conv2D(channels, 1, use_bias=False, name=name + "_expand")(x)
        x = _bn(name + "_expand_bn")(x)
        x = layers.ReLU(name=name + "_expand_relu")(x)
    f2 = depthwise_freq_strided(x, 3, freq_stride, name + "_freq_dw")
    f2 = SubSpectralNorm(subbands, name=name + "_ssn")(f2)
    f1 = layers.AveragePooling2D((1, f2.shape[2]), name=name + "_freq_avg")(f2)
    f1 = layers.DepthwiseConv2D((3, 1), dilation_rate=(dilation, 1), padding="same",
                                use_bias=False, name=name + "_time_dw")(f1)
    f1 = _bn(name + "_time_bn")(f1)
    f1 = layers.Activation("swish", name=name + "_swish")(f1)
    f1 = layers.Conv2D(channels, 1, use_bias=False, name=name + "_pw")(f1)
    if dropout:
        f1 = layers.SpatialDropout2D(dropout, name=name + "_dropout")(f1)
    branches = [f2, f1] if transition else [x, f2, f1]
    out = layers.Add(name=name + "_add")(branches)
    return layers.ReLU(name=name + "_relu")(out)


def bc_resnet(num_classes=12, width=3.0, hop_ms=20.0, num_mel_bins=40, dropout=0.1,
              subbands=5, spec_augment=False, features="logmel", name="edge_bcres", **frontend):
    """BC-ResNet-`width` (Kim et al., Interspeech 2021) on 40 log-mel bands, 30 ms window and
    20 ms hop (the paper uses 10 ms: hop_ms=10 doubles the cost).

    Stages of (blocks, channels/width, frequency stride, temporal dilation): (2, 8, 1, 1),
    (2, 12, 2, 2), (4, 16, 2, 4), (4, 20, 1, 8) after a 5x5 conv with frequency stride 2; head:
    depthwise 5x5 collapsing frequency, 1x1 to 32*width, time average, 1x1 to the classes.
    `features="pack"`: on the spectrogram pack's 98 x 40 (PackFeatures) instead.
    """
    audio = keras.Input((CLIP_SAMPLES,), name="audio")
    if features == "logmel":
        frontend = {"window_ms": 30.0, "hop_ms": hop_ms, "num_mel_bins": num_mel_bins,
                    **frontend}
    elif features != "pack":
        raise ValueError(f"features must be 'logmel' or 'pack', got {features!r}")
    x = _features(audio, features, spec_augment, **frontend)

    def ch(base):
        return max(int(round(base * width)), 1)

    x = layers.Conv2D(ch(16), 5, strides=(1, 2), padding="same", use_bias=False,
                      name="conv0")(x)
    x = _bn("conv0_bn")(x)
    x = layers.ReLU(name="conv0_relu")(x)
    stages = [(2, 8, 1, 1), (2, 12, 2, 2), (4, 16, 2, 4), (4, 20, 1, 8)]
    for s, (blocks, base, stride, dilation) in enumerate(stages):
        for b in range(blocks):
            x = _bc_block(x, ch(base), stride if b == 0 else 1, dilation, dropout, subbands,
                          f"stage{s + 1}_block{b + 1}")
    x = layers.DepthwiseConv2D((5, x.shape[2]), padding="valid", use_bias=False,
                               name="head_dw")(layers.ZeroPadding2D(((2, 2), (0, 0)),
                                                                    name="head_pad")(x))
    x = layers.Conv2D(ch(32), 1, use_bias=False, name="head_pw")(x)
    x = _bn("head_bn")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(audio, logits, name=name)


def edge_bcres(num_classes=12, **options):
    """BC-ResNet-3 on 40 log-mel (30 ms / 20 ms): the most accurate per parameter in the
    literature, but ~100 small ops make it slow in TFLite; `edge_tcs` is the one we ship."""
    return bc_resnet(num_classes, **{"width": 3.0, "hop_ms": 20.0, **options})


# ----------------------------------------------------------------------------------------------
# The edge model we ship: a time-channel separable residual network on log-mel


def time_channel_separable(num_classes=12, width=1.5, kernels=(9, 11, 13, 15), repeats=2,
                           hop_ms=20.0, num_mel_bins=40, head_channels=128, dropout=0.1,
                           head_dropout=0.2, spec_augment=False, features="logmel",
                           time_pool=1, name="edge_tcs", **frontend):
    """A MatchboxNet/TC-ResNet-style 1D network: the 40 log-mel bands are the channels, every
    conv runs over time only, and each block is `repeats` x (depthwise k over time, 1x1 conv, BN,
    relu, dropout) with a 1x1-conv + BN residual. Few, GEMM-shaped ops: fast in TFLite at batch 1.

    Shapes at the defaults: 49 frames (30 ms window, 20 ms hop) x 40 bands -> separable conv
    k5 to 64*width channels -> 4 blocks of 64*width channels with kernels of 9..15 frames
    (180..300 ms) -> 1x1 to `head_channels` -> time average -> dense. Kernels count frames, so
    hop_ms=10 halves their span (and doubles the cost). `features="pack"` puts PackFeatures in
    front (98 frames of the published spectrograms' 40 bands, 10 ms hop), so that the body can
    also learn from the spectrogram pack; `time_pool=2` then averages frame pairs (49 frames,
    as the 20 ms hop gives), which keeps the kernels' span and the cost of the default.
    """
    audio = keras.Input((CLIP_SAMPLES,), name="audio")
    if features == "pack":
        frontend = dict(frontend)
    elif features == "logmel":
        frontend = {"window_ms": 30.0, "hop_ms": hop_ms, "num_mel_bins": num_mel_bins,
                    **frontend}
    else:
        raise ValueError(f"features must be 'logmel' or 'pack', got {features!r}")
    x = _frontend(audio, features, spec_augment, **frontend)
    if time_pool > 1:
        x = layers.AveragePooling1D(time_pool, name="time_pool")(x)
    channels = max(int(round(64 * width)), 8)

    def separable(x, filters, kernel, name, relu=True):
        x = layers.DepthwiseConv1D(kernel, padding="same", use_bias=False, name=name + "_dw")(x)
        x = layers.Conv1D(filters, 1, use_bias=False, name=name + "_pw")(x)
        x = _bn(name + "_bn")(x)
        return layers.ReLU(name=name + "_relu")(x) if relu else x

    x = separable(x, channels, 5, "prologue")
    for b, kernel in enumerate(kernels):
        block = f"block{b + 1}"
        residual = layers.Conv1D(channels, 1, use_bias=False, name=block + "_res_pw")(x)
        residual = _bn(block + "_res_bn")(residual)
        for r in range(repeats):
            last = r == repeats - 1
            x = separable(x, channels, kernel, f"{block}_sub{r + 1}", relu=not last)
            if not last and dropout:
                x = layers.Dropout(dropout, name=f"{block}_sub{r + 1}_dropout")(x)
        x = layers.ReLU(name=block + "_relu")(layers.Add(name=block + "_add")([x, residual]))
        if dropout:
            x = layers.Dropout(dropout, name=block + "_dropout")(x)
    x = layers.Conv1D(head_channels, 1, use_bias=False, name="head_pw")(x)
    x = _bn("head_bn")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.GlobalAveragePooling1D(name="avg_pool")(x)
    if head_dropout:
        x = layers.Dropout(head_dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(audio, logits, name=name)


def edge_tcs(num_classes=12, **options):
    """The model we ship (see `time_channel_separable`); `width` scales the channels."""
    return time_channel_separable(num_classes, **options)


MODELS = {
    "seed195": seed195,
    "seed106": seed106,
    "tutorial_conv": tutorial_conv,
    "ds_cnn_s": ds_cnn_s,
    "ds_cnn_l": ds_cnn_l,
    "edge_bcres": edge_bcres,
    "edge_tcs": edge_tcs,
}
EDGE_MODEL = "edge_tcs"  # the model the project ships


def build_model(name, num_classes, **options):
    """Build model `name` from `MODELS` for `num_classes` outputs (logits); options go to the
    builder (e.g. width=2 for edge_bcres, spec_augment=True for the log-mel/MFCC models)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    if int(num_classes) < 2:
        raise UserError(f"num_classes must be at least 2, got {num_classes}")
    try:
        return MODELS[name](int(num_classes), **options)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad option for model {name}: {e}") from e


# ----------------------------------------------------------------------------------------------
# Checkpoints and statistics


def read_labels(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_error_message(path, error):
    """One line on why Keras would not load path; code in the file is named as such."""
    text = str(error)
    if "arbitrary code execution" in text or "safe_mode" in text:
        return (f"refusing to load {path}: it holds Python code (a Lambda layer or a pickled "
                "function), which safe mode never runs; use checkpoints written by train.py")
    # Keras nests its deserialisation errors ("... Exception encountered: <the cause>"): keep
    # the innermost cause, first sentence, without the config dump.
    cause = text.rsplit("Exception encountered:", 1)[-1].strip()
    cause = cause.split(". ")[0].split("Full object config")[0].strip().splitlines()
    cause = cause[0][:200] if cause else ""
    return f"not a loadable Keras archive: {path} ({type(error).__name__}: {cause})"


def load_checkpoint(path):
    """Load a `.keras` checkpoint (safe mode) and the `labels.txt` beside it -> (model, labels)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    labels_path = os.path.join(os.path.dirname(os.path.abspath(path)), "labels.txt")
    if not os.path.isfile(labels_path):
        raise UserError(f"labels.txt not found beside the checkpoint: {labels_path}")
    labels = read_labels(labels_path)
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # zipfile, h5py, ValueError, ... all mean the same to the user
        raise UserError(load_error_message(path, e)) from None
    outputs = model.output_shape[-1]
    if len(labels) != outputs:
        raise UserError(f"{labels_path} has {len(labels)} labels but the model has {outputs} "
                        "outputs")
    return model, labels


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def _positions(shape):
    """Product of the spatial dims (all but batch and channels)."""
    return int(np.prod([d for d in shape[1:-1]])) if len(shape) > 2 else 1


def layer_macs(layer):
    """Multiply-accumulates of one layer on one clip (see the module docstring)."""
    if isinstance(layer, LogMel):
        return layer.macs(layer.input.shape[-1])
    if isinstance(layer, layers.Dense):
        in_shape = layer.input.shape
        return _positions(in_shape) * in_shape[-1] * layer.units
    if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        taps = int(np.prod(layer.kernel_size))
        channels = layer.input.shape[-1]
        return _positions(layer.output.shape) * taps * channels * layer.depth_multiplier
    if isinstance(layer, (layers.Conv1D, layers.Conv2D)):
        taps = int(np.prod(layer.kernel_size))
        channels = layer.input.shape[-1] // layer.groups
        return _positions(layer.output.shape) * taps * channels * layer.filters
    return 0


def model_stats(model):
    """{"params": all weights (trainable + not), "macs": multiply-accumulates per clip,
    "float_bytes": params * 4}."""
    params = int(sum(int(np.prod(w.shape)) for w in model.weights))
    macs = int(sum(layer_macs(layer) for layer in _flat_layers(model)))
    return {"params": params, "macs": macs, "float_bytes": 4 * params}


# ----------------------------------------------------------------------------------------------
# TFLite


FRONTEND_LAYERS = (LogMel, MFCC)


def _batch_one(model):
    """The same model (shared weights) with a fixed batch of 1, as TFLite wants."""
    shape = tuple(model.input_shape[1:])
    x = keras.Input(shape, batch_size=1, name="audio" if shape == (CLIP_SAMPLES,) else "features")
    return keras.Model(x, model(x, training=False), name=model.name)


def tflite_bytes(model, quantize=None, representative=None):
    """Convert a model to a TFLite flatbuffer with builtin ops only; input [1, 16000] float32
    (or [1, frames, bins] for a model's body after its front end).

    quantize=None: float32. quantize="int8": int8 weights and activations, calibrated on
    `representative` (float32 [n, 16000] clips, ~100 real ones is plenty; features for a
    body), float input/output.
    The log-mel/MFCC front end stays float (GATHER framing, the DFT and mel matmuls, SQUARE,
    LOG): 8-bit raw audio and 8-bit power spectra would lose quiet speech, so the features are
    quantized only after the log and the normalisation.
    Models without such a front end (seed195/seed106) are quantized whole, input included.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(_batch_one(model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is None:
        return converter.convert()
    if quantize != "int8":
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if representative is None or len(representative) == 0:
        raise UserError("int8 conversion needs representative clips")
    representative = np.asarray(representative, dtype=np.float32)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([clip[None]] for clip in representative)
    frontends = [layer.name for layer in _flat_layers(model)
                 if isinstance(layer, FRONTEND_LAYERS)]
    if not frontends:
        return converter.convert()
    # Selective quantization (TF's "quantization debugger" recipe): calibrate the float graph,
    # then quantize every op except the ones whose output tensors belong to the front end.
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import convert as tflite_convert

    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    interpreter = Interpreter(model_content=calibrated)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    denylisted = [names[i] for op in interpreter._get_ops_details() for i in op["outputs"]
                  if any(f"/{name}" in names[i] for name in frontends)]
    return tflite_convert.mlir_quantize(calibrated, disable_per_channel=False,
                                        fully_quantize=False, denylisted_nodes=denylisted)


def tflite_ops(flatbuffer):
    """{op name: set of input dtypes} of a TFLite model, to see which ops run in float."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    dtypes = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    found = {}
    for op in interpreter._get_ops_details():
        first = [i for i in op["inputs"] if i >= 0][:1]
        found.setdefault(op["op_name"], set()).update(dtypes[i] for i in first)
    return found


# ----------------------------------------------------------------------------------------------
# CLI


def parse_option(text):
    """'width=2' -> ('width', 2); values are Python literals, else strings."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UserError(f"--option wants KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", "--model", dest="model", default="edge_bcres",
                        help="architecture name (see --list)")
    parser.add_argument("--num_classes", type=int, default=12, help="number of output classes")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="builder option, repeatable (e.g. width=2, hop_ms=20)")
    parser.add_argument("--list", action="store_true", help="list every model with its stats")
    parser.add_argument("--quiet", action="store_true", help="no layer-by-layer summary")
    parser.add_argument("--checkpoint", help="describe this saved .keras checkpoint instead "
                        "(labels.txt beside it), loaded in safe mode")
    args = parser.parse_args(argv)
    options = dict(parse_option(text) for text in args.option)
    if args.checkpoint:
        model, labels = load_checkpoint(args.checkpoint)
        if not args.quiet:
            model.summary()
        stats = model_stats(model)
        print(f"checkpoint {args.checkpoint}: {len(labels)} labels ({', '.join(labels)}); "
              f"params {stats['params']:,}  MACs/clip {stats['macs']:,}")
        return 0
    if args.list:
        print(f"{'model':<14} {'params':>10} {'MACs':>13} {'float bytes':>12}")
        for name in MODELS:
            stats = model_stats(build_model(name, args.num_classes))
            print(f"{name:<14} {stats['params']:>10,} {stats['macs']:>13,} "
                  f"{stats['float_bytes']:>12,}")
        return 0
    model = build_model(args.model, args.num_classes, **options)
    if not args.quiet:
        model.summary()
    stats = model_stats(model)
    print(f"model {args.model}: params {stats['params']:,}  MACs/clip {stats['macs']:,}  "
          f"float bytes {stats['float_bytes']:,}")
    return 0


if __name__ == "__main__":
    run_cli(main)
