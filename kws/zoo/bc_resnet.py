"""BC-ResNet (Kim et al., Interspeech 2021) on log-mel: accurate per parameter, slow in TFLite."""


import keras
from keras import layers

from kws import CLIP_SAMPLES
from kws.layers import (
    SubSpectralNorm,
)
from kws.zoo.blocks import batch_norm, depthwise_freq_strided, front_end_image


def _bc_block(x, channels, freq_stride, dilation, dropout, subbands, name):
    """Broadcasted residual block (BC-ResNet): a frequency-wise depthwise conv + SubSpectralNorm
    (f2), then the frequency-averaged temporal path (f1: depthwise over time, BN, swish, 1x1,
    channel dropout) broadcast back over frequency and added. Identity shortcut when shapes keep.
    """
    transition = x.shape[-1] != channels or freq_stride != 1
    if x.shape[-1] != channels:
        x = layers.Conv2D(channels, 1, use_bias=False, name=name + "_expand")(x)
        x = batch_norm(name + "_expand_bn")(x)
        x = layers.ReLU(name=name + "_expand_relu")(x)
    f2 = depthwise_freq_strided(x, 3, freq_stride, name + "_freq_dw")
    f2 = SubSpectralNorm(subbands, name=name + "_ssn")(f2)
    f1 = layers.AveragePooling2D((1, f2.shape[2]), name=name + "_freq_avg")(f2)
    f1 = layers.DepthwiseConv2D((3, 1), dilation_rate=(dilation, 1), padding="same",
                                use_bias=False, name=name + "_time_dw")(f1)
    f1 = batch_norm(name + "_time_bn")(f1)
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
    x = front_end_image(audio, features, spec_augment, **frontend)

    def ch(base):
        return max(int(round(base * width)), 1)

    x = layers.Conv2D(ch(16), 5, strides=(1, 2), padding="same", use_bias=False,
                      name="conv0")(x)
    x = batch_norm("conv0_bn")(x)
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
    x = batch_norm("head_bn")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(audio, logits, name=name)


def edge_bcres(num_classes=12, **options):
    """BC-ResNet-3 on 40 log-mel (30 ms / 20 ms): the most accurate per parameter in the
    literature, but ~100 small ops make it slow in TFLite; `edge_tcs` is the one we ship."""
    return bc_resnet(num_classes, **{"width": 3.0, "hop_ms": 20.0, **options})
