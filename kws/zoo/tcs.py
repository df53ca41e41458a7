"""The edge model: a time-channel separable residual net on 40 log-mel bands (the one we ship)."""


import keras
from keras import layers

from kws import CLIP_SAMPLES
from kws.zoo.blocks import batch_norm, front_end


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
    x = front_end(audio, features, spec_augment, **frontend)
    if time_pool > 1:
        x = layers.AveragePooling1D(time_pool, name="time_pool")(x)
    channels = max(int(round(64 * width)), 8)

    def separable(x, filters, kernel, name, relu=True):
        x = layers.DepthwiseConv1D(kernel, padding="same", use_bias=False, name=name + "_dw")(x)
        x = layers.Conv1D(filters, 1, use_bias=False, name=name + "_pw")(x)
        x = batch_norm(name + "_bn")(x)
        return layers.ReLU(name=name + "_relu")(x) if relu else x

    x = separable(x, channels, 5, "prologue")
    for b, kernel in enumerate(kernels):
        block = f"block{b + 1}"
        residual = layers.Conv1D(channels, 1, use_bias=False, name=block + "_res_pw")(x)
        residual = batch_norm(block + "_res_bn")(residual)
        for r in range(repeats):
            last = r == repeats - 1
            x = separable(x, channels, kernel, f"{block}_sub{r + 1}", relu=not last)
            if not last and dropout:
                x = layers.Dropout(dropout, name=f"{block}_sub{r + 1}_dropout")(x)
        x = layers.ReLU(name=block + "_relu")(layers.Add(name=block + "_add")([x, residual]))
        if dropout:
            x = layers.Dropout(dropout, name=block + "_dropout")(x)
    x = layers.Conv1D(head_channels, 1, use_bias=False, name="head_pw")(x)
    x = batch_norm("head_bn")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = layers.GlobalAveragePooling1D(name="avg_pool")(x)
    if head_dropout:
        x = layers.Dropout(head_dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(audio, logits, name=name)


def edge_tcs(num_classes=12, **options):
    """The model we ship (see `time_channel_separable`); `width` scales the channels."""
    return time_channel_separable(num_classes, **options)
