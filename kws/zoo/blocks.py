"""Building blocks the architectures share: batch norm, the front end as a layer stack, the
winner's separable 1D block, a frequency-strided depthwise conv that runs on every CPU."""

import math

import keras
from keras import layers

from kws.layers import (
    BN_MOMENTUM,
    MFCC,
    FrequencySubsample,
    FrequencyWarp,
    LogMel,
    PackFeatures,
    SpecAugment,
)


def batch_norm(name=None, axis=-1):
    return layers.BatchNormalization(axis=axis, momentum=BN_MOMENTUM, epsilon=1e-3, name=name)


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


def l2_regularizer(weight):
    return keras.regularizers.L2(weight) if weight else None


def separable_1d(x, filters, strides, padding, l2, name):
    """Depthwise k3 (no BN between) then 1x1 conv + BN + relu6, as the winner's block."""
    x = layers.DepthwiseConv1D(3, strides=strides, padding=padding, use_bias=False,
                               depthwise_regularizer=l2_regularizer(l2), name=name + "_dw")(x)
    x = layers.Conv1D(filters, 1, use_bias=False, kernel_regularizer=l2_regularizer(l2),
                      name=name + "_pw")(x)
    x = batch_norm(name + "_bn")(x)
    return layers.ReLU(max_value=6.0, name=name + "_relu6")(x)


def front_end(audio, kind, spec_augment, **frontend):
    """Log-mel or MFCC [B, T, F], then SpecAugment when `spec_augment` is True or a dict of its
    settings (training only); a dict's "freq_warp" (e.g. 0.1) first stretches each clip's mel
    bands (FrequencyWarp)."""
    if kind == "mfcc":
        layer = MFCC(name="mfcc", **frontend)
    elif kind == "pack":
        layer = PackFeatures(name="pack_features", **frontend)
    else:
        layer = LogMel(name="log_mel", **frontend)
    x = layer(audio)
    if spec_augment:
        settings = dict(spec_augment) if isinstance(spec_augment, dict) else {}
        warp = settings.pop("freq_warp", 0.0)
        if warp:
            if kind == "mfcc":
                raise ValueError("freq_warp stretches mel bands; MFCC coefficients are not bands")
            x = FrequencyWarp(max_warp=warp, lower_hz=layer.lower_hz, upper_hz=layer.upper_hz,
                              name="freq_warp")(x)
        x = SpecAugment(name="spec_augment", **settings)(x)
    return x


def front_end_image(audio, kind, spec_augment, **frontend):
    """The front end as a one-channel image [B, T, F, 1] for the 2D models."""
    x = front_end(audio, kind, spec_augment, **frontend)
    return layers.Reshape((x.shape[1], x.shape[2], 1), name="to_image")(x)
