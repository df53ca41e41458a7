"""Saved models: load a `.keras` checkpoint with its labels (safe mode, one-line errors), and
count its parameters and multiply-accumulates per clip."""

import os

import keras
import numpy as np
from keras import layers

from kws.common import UserError
from kws.labels import read_labels
from kws.layers import (
    LogMel,
)


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


def flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from flat_layers(layer)
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
    macs = int(sum(layer_macs(layer) for layer in flat_layers(model)))
    return {"params": params, "macs": macs, "float_bytes": 4 * params}
