"""Baselines on MFCC: the TF speech_commands tutorial's `conv` and Hello Edge's DS-CNN S and L."""


import keras
from keras import layers

from kws import CLIP_SAMPLES
from kws.zoo.blocks import batch_norm, front_end_image


def tutorial_conv(num_classes=12, dropout=0.5, spec_augment=False, features="mfcc", **frontend):
    """The TF speech_commands tutorial's `conv` (cnn-trad-fpool3): 98 x 40 MFCC (30 ms / 10 ms),
    conv 64 @ 20x8 + relu + max-pool 2, conv 64 @ 10x4 + relu, dense to the classes."""
    audio = keras.Input((CLIP_SAMPLES,), name="audio")
    if features == "mfcc":
        frontend = {"num_coefficients": 40, "window_ms": 30.0, "hop_ms": 10.0, **frontend}
    elif features != "pack":  # the pack's 98 x 40 (PackFeatures), the same shape
        raise ValueError(f"features must be 'mfcc' or 'pack', got {features!r}")
    x = front_end_image(audio, features, spec_augment, **frontend)
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
    x = front_end_image(audio, features, spec_augment, **frontend)
    x = layers.Conv2D(filters, (10, 4), strides=first_strides, padding="same", use_bias=False,
                      name="conv0")(x)
    x = batch_norm("conv0_bn")(x)
    x = layers.ReLU(name="conv0_relu")(x)
    for i, stride in enumerate(strides):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                   name=f"ds{i + 1}_dw")(x)
        x = batch_norm(f"ds{i + 1}_dw_bn")(x)
        x = layers.ReLU(name=f"ds{i + 1}_dw_relu")(x)
        x = layers.Conv2D(filters, 1, use_bias=False, name=f"ds{i + 1}_pw")(x)
        x = batch_norm(f"ds{i + 1}_pw_bn")(x)
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
