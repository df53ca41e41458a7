"""A trained checkpoint as a batched probability function: float32 audio [B, 16000] ->
softmax probabilities [B, k], on as many CPU threads as asked."""

import sys

import numpy as np
import tensorflow as tf

from kws import CLIP_SAMPLES
from kws.checkpoint import load_checkpoint
from kws.common import require_file
from kws.labels import model_label


def configure_threads(threads):
    """Limit TensorFlow to `threads` CPU threads; must run before the first TF op."""
    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already running (e.g. called twice in one process)
        print("warning: --threads ignored, TensorFlow was already initialised", file=sys.stderr)


def load_model(checkpoint):
    """(keras model, model labels) via kws.checkpoint.load_checkpoint, which checks labels vs
    outputs."""
    require_file(checkpoint, "checkpoint")
    keras_model, labels = load_checkpoint(checkpoint)
    return keras_model, [model_label(label) for label in labels]


def make_predictor(keras_model):
    """A compiled function: float32 audio [B, 16000] -> softmax probabilities [B, k]."""
    @tf.function(input_signature=[tf.TensorSpec([None, CLIP_SAMPLES], tf.float32)])
    def predict(clips):
        logits = keras_model(clips, training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    return lambda clips: predict(np.ascontiguousarray(clips, dtype=np.float32)).numpy()
