"""Export: a Keras model to a TFLite flatbuffer, float or int8 with the front end kept float."""

import keras
import numpy as np
import tensorflow as tf

from kws import CLIP_SAMPLES
from kws.checkpoint import flat_layers
from kws.common import UserError
from kws.layers import FRONTEND_LAYERS


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
    frontends = [layer.name for layer in flat_layers(model)
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
