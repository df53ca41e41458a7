"""The model zoo: every model takes raw 16 kHz audio [batch, 16000] and returns logits.

To add a model: a file here with its builder (`def my_model(num_classes=12, **options)` returning
a keras.Model from audio [batch, 16000] to logits), and one line in `MODELS` below.

Models (the registry `MODELS` is the source of truth; `EDGE_MODEL` names the one we ship):
  seed195        the Kaggle winner's Raspberry Pi model (conv_1d_time_sliced_with_attention):
                 depthwise-separable 1D convs on 40-sample slices of the raw waveform.
  seed106        the same trunk, 64-wide stem and 448-wide top, the ensemble's 32-class model.
  tutorial_conv  the TF speech_commands tutorial's default `conv` model on 40 MFCC.
  ds_cnn_s/_l    Hello Edge DS-CNN S and L on 10 MFCC (40 ms window, 20 ms hop, as the paper).
  edge_tcs       our edge model: a time-channel separable residual net on 40 log-mel bands.
  edge_bcres     BC-ResNet-3 on 40 log-mel: accurate per parameter, but slow in TFLite.

The feature front ends (`LogMel`, `MFCC`, `TimeSlices`; kws/layers.py) are Keras layers inside
the model, so a checkpoint or a TFLite file is the whole pipeline from samples to logits. The DFT
is two small matmuls (builtin TFLite ops); `kws.export.tflite_bytes` converts a model to float or
int8 TFLite, keeping the front end float in int8 (see there why).

`kws.checkpoint.model_stats` counts multiply-accumulates per 1 s clip analytically, layer by layer:
  Conv1D/Conv2D   output positions * kernel taps * input channels * filters
  Depthwise       output positions * kernel taps * channels * depth multiplier
  Dense           positions * inputs * units
  LogMel          per frame: window + the two DFT stages + squares + mel matmul, exactly the
                  multiplies the layer does (see LogMel.macs); MFCC adds mels * coefficients
Batch norms (folded into convs at inference), activations, pooling, additions and the attention
weighting are not counted: they are a few percent at most in every model here.
"""

from kws.common import UserError
from kws.zoo.baselines import ds_cnn_l, ds_cnn_s, tutorial_conv
from kws.zoo.bc_resnet import edge_bcres
from kws.zoo.seed import seed106, seed195
from kws.zoo.tcs import edge_tcs

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
