"""Export: a trained Keras model as the files a Raspberry Pi runs.

The frozen TensorFlow GraphDef with the speech_commands tutorial's interface (wav_data ->
decoded_sample_data -> labels_softmax), TFLite flatbuffers (float, or int8 with the front end
kept float), the model's body after its log-mel/MFCC front end for streaming, and the label
folding of an all-words model into the 12 competition classes.
"""

import contextlib
import io

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.lite.python import convert as tflite_convert
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.checkpoint import flat_layers
from kws.common import UserError
from kws.frontend import FrontEnd
from kws.labels import SILENCE_LABEL, UNKNOWN_LABEL, competition_label
from kws.layers import FRONTEND_LAYERS, front_end_layer

INPUT_NODE = "wav_data"
DECODED_NODE = "decoded_sample_data"
OUTPUT_NODE = "labels_softmax"
RATE_CHECK_NODE = "check_sample_rate"


class ExportError(Exception):
    """The model could not be exported or does not match the Keras model (exit code 1)."""


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
    interpreter = Interpreter(model_content=flatbuffer)
    dtypes = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    found = {}
    for op in interpreter._get_ops_details():
        first = [i for i in op["inputs"] if i >= 0][:1]
        found.setdefault(op["op_name"], set()).update(dtypes[i] for i in first)
    return found


def float_ops(model_bytes):
    """Sorted names of the ops of a quantized model that still compute in float."""
    return sorted(op for op, dtypes in tflite_ops(model_bytes).items()
                  if "float32" in dtypes and op not in ("QUANTIZE", "DEQUANTIZE"))


def run_tflite(model_bytes, samples):
    """Probabilities [n, k] of a .tflite model run clip by clip on float samples [n, ...]."""
    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    probs = []
    for clip in samples:
        interpreter.set_tensor(inp, clip[None].astype(np.float32))
        interpreter.invoke()
        probs.append(interpreter.get_tensor(out).copy())
    return np.concatenate(probs)


def label_folding(labels, competition):
    """(matrix [n, m] that maps model probabilities onto the output labels, or None; labels).

    With competition=True, words outside the competition's 12 labels add to _unknown_, as the
    winning entry did for its 32-class models.
    """
    if not competition:
        return None, list(labels)
    missing = [w for w in (SILENCE_LABEL, UNKNOWN_LABEL) if w not in labels]
    if missing:
        raise UserError(f"--competition_labels needs {', '.join(missing)} among the model's labels")
    out = [w for w in labels if competition_label(w) == w]
    matrix = np.zeros((len(labels), len(out)), np.float32)
    for i, w in enumerate(labels):
        matrix[i, out.index(competition_label(w))] = 1.0
    return matrix, out


def probabilities(keras_model, samples, matrix=None, name=None):
    """Softmax of the model's logits for float samples [B, 16000], folded by matrix if given."""
    logits = keras_model(samples, training=False)
    if matrix is None:
        return tf.nn.softmax(logits, name=name)
    return tf.identity(tf.matmul(tf.nn.softmax(logits), tf.constant(matrix)), name=name)


def _prune(graph_def, output):
    """Keep only the nodes the output depends on (drops the tf.function's Identity output)."""
    by_name = {n.name: n for n in graph_def.node}
    keep, todo = set(), [output]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        todo += [i.lstrip("^").split(":")[0] for i in by_name[name].input]
    pruned = tf.compat.v1.GraphDef()
    pruned.versions.CopyFrom(graph_def.versions)
    pruned.library.CopyFrom(graph_def.library)
    pruned.node.extend(n for n in graph_def.node if n.name in keep)
    return pruned


def frozen_graph_def(keras_model, matrix=None):
    """The tutorial-compatible GraphDef: wav_data -> decoded_sample_data -> labels_softmax."""
    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name=INPUT_NODE)])
    def serve(wav_data):
        # DecodeWav reads 16-bit PCM only and cannot resample: a file at another rate is
        # refused here instead of being labelled at the wrong speed; channels are mixed to
        # mono, as every other path does. Feeding decoded_sample_data:0/:1 skips the decoder.
        # The check sits on the bytes' way into the decoder, so a client that feeds
        # decoded_sample_data:0 alone (the tutorial allows it) runs neither.
        _, rate = tf.audio.decode_wav(wav_data, name="wav_header")
        check = tf.debugging.assert_equal(
            rate, SAMPLE_RATE, name=RATE_CHECK_NODE,
            message=f"{INPUT_NODE} takes {SAMPLE_RATE} Hz 16-bit PCM WAV only; resample the "
                    f"file, or feed float samples to {DECODED_NODE}:0")
        with tf.control_dependencies([check]):
            checked = tf.identity(wav_data, name="checked_wav_data")
        audio, _ = tf.audio.decode_wav(checked, desired_channels=-1,
                                       desired_samples=CLIP_SAMPLES, name=DECODED_NODE)
        mono = tf.reduce_mean(audio, axis=1)
        return probabilities(keras_model, tf.reshape(mono, [1, CLIP_SAMPLES]), matrix,
                             name=OUTPUT_NODE)

    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    graph_def = _prune(frozen.graph.as_graph_def(), OUTPUT_NODE)
    ops = {n.name: n.op for n in graph_def.node}
    expected = {INPUT_NODE: "Placeholder", DECODED_NODE: "DecodeWav"}
    wrong = [f"{k} ({ops.get(k, 'missing')})" for k, v in expected.items() if ops.get(k) != v]
    if wrong or OUTPUT_NODE not in ops:
        raise ExportError(f"frozen graph lost its interface nodes: {wrong or [OUTPUT_NODE]}")
    return graph_def


def probability_model(keras_model, matrix=None, front_end=None):
    """The checkpoint with a softmax (and the label folding) on top: samples -> probabilities;
    given its front-end layer, features [frames, bins] -> probabilities (the model's body)."""
    if front_end is None:
        network, x = keras_model, keras.Input((CLIP_SAMPLES,), name="samples")
    else:
        network = keras.Model(front_end.output, keras_model.output)
        x = keras.Input(tuple(front_end.output.shape[1:]), name="features")
    probs = keras.layers.Softmax(name=OUTPUT_NODE)(network(x))
    if matrix is not None:
        fold = keras.layers.Dense(matrix.shape[1], use_bias=False, trainable=False,
                                  name="fold_labels")
        probs = fold(probs)
        fold.set_weights([matrix])
    return keras.Model(x, probs, name=keras_model.name + ("" if front_end is None else "_body"))


def tflite_model(keras_model, matrix=None, representative=None):
    """Float TFLite bytes, or int8 (weights and activations) when representative clips are given.

    Input float32 [1, 16000], output probabilities [1, n] in both cases. The conversion is
    tflite_bytes: builtin ops only, and in int8 the log-mel/MFCC front end stays float.
    """
    kind = "float" if representative is None else "int8"
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the converter lists every capture
            return tflite_bytes(probability_model(keras_model, matrix),
                                None if representative is None else "int8", representative)
    except Exception as e:  # ConverterError carries the MLIR diagnostics; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{kind} TFLite conversion failed: {first}") from None


def stream_exports(keras_model, matrix, calib, with_int8):
    """{stream: float body bytes, stream_int8: int8 body bytes, stream_npz: front-end
    constants} for streaming with cached features, or {} for a raw-audio model."""
    layer = front_end_layer(keras_model)
    if layer is None:
        return {}
    constants = layer.stream_constants()
    body = probability_model(keras_model, matrix, front_end=layer)
    out = {"stream_npz": constants}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            out["stream"] = tflite_bytes(body)
            if with_int8:
                front = FrontEnd(constants)
                features = np.stack([front.window_features(c) for c in calib])
                out["stream_int8"] = tflite_bytes(body, "int8", features)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"stream body TFLite conversion failed: {first}") from None
    return out
