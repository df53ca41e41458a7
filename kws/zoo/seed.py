"""The Kaggle winner's raw-waveform models (conv_1d_time_sliced_with_attention): seed195, the
Raspberry Pi prize model, and seed106, the ensemble's 32-class member."""


import keras
from keras import layers

from kws import CLIP_SAMPLES
from kws.layers import (
    AttentionMaxPool,
    TimeSlices,
)
from kws.zoo.blocks import batch_norm, l2_regularizer, separable_1d


def time_sliced_attention(num_classes, first_filters=128, context_filters=128,
                          stage_filters=(192, 256, 320, 384, 512), attention_bias=True,
                          dropout=0.4, l2=1e-5, name="seed195"):
    """conv_1d_time_sliced_with_attention: 800 slices of 40 samples (hop 20) -> logits.

    Shapes on a 1 s clip: 800 -> conv k3 s2 -> 399 -> context (valid) -> 397 -> five stages of
    (stride 2 'same', k3 'valid'): 197, 97, 47, 22, 9 time steps at the attention head.
    """
    audio = keras.Input((CLIP_SAMPLES,), name="audio")
    x = TimeSlices(40, 20, name="time_slices")(audio)
    x = layers.Conv1D(first_filters, 3, strides=2, use_bias=False,
                      kernel_regularizer=l2_regularizer(l2), name="conv0")(x)
    x = batch_norm("conv0_bn")(x)
    x = layers.ReLU(max_value=6.0, name="conv0_relu6")(x)
    x = separable_1d(x, context_filters, 1, "valid", l2, "context")
    for i, filters in enumerate(stage_filters):
        x = separable_1d(x, filters, 2, "same", l2, f"stage{i + 1}_reduce")
        x = separable_1d(x, filters, 1, "valid", l2, f"stage{i + 1}_context")
    steps = x.shape[1]
    weights = layers.Flatten(name="attention_flatten")(x)
    weights = layers.Dropout(dropout, name="attention_dropout")(weights)
    weights = layers.Dense(steps, activation="softmax", use_bias=attention_bias,
                           name="attention")(weights)
    attended = AttentionMaxPool(name="attention_max")([x, weights])
    pooled = layers.GlobalAveragePooling1D(name="avg_pool")(x)
    x = layers.Concatenate(name="head_concat")([attended, pooled])
    x = layers.Dropout(dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, use_bias=False, kernel_regularizer=l2_regularizer(l2),
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
