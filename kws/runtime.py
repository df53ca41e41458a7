"""Models at inference: a .tflite (LiteRT), a frozen .pb or a .keras checkpoint, one clip at a time.

    model, labels = load_model("tf_files/frozen_int8.tflite")
    probs = model.predict(samples)            # float32 [16000] -> probabilities [n]

Needs numpy and ai_edge_litert (or tflite_runtime, 32-bit ARM's) for a .tflite, TensorFlow only
for a .pb (imported when used): what a Raspberry Pi needs. The labels file is found beside the
model (NAME_labels.txt, then labels.txt) unless given. KWS_TFLITE_KERNELS=builtin (or reference)
runs a .tflite on the runtime's built-in optimized kernels without the XNNPACK delegate (or its
reference kernels) instead of its default ones, as the ARM check does to learn how far int8
kernels that round differently move a model.
"""

import importlib
import os
import re
from importlib import metadata

import numpy as np

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.common import UserError
from kws.frontend import FrameCache, FrontEnd
from kws.labels import COMPETITION_LABELS, competition_index, is_competition_labels, read_labels

PB_SAMPLES = "decoded_sample_data:0"
PB_RATE = "decoded_sample_data:1"
PB_OUTPUT = "labels_softmax:0"
# What LiteRT says when a model uses an op, or an op version, that it is too old to know
NEWER_MODEL = re.compile(r"old TFLite binary|newer model|older version of this builtin", re.I)


# The .tflite runtimes, in order of preference: LiteRT, then the older tflite-runtime, the only
# one with a wheel for 32-bit ARM (Raspberry Pi OS armv7l: requirements-pi-armv7.txt)
RUNTIMES = (("ai-edge-litert", "ai_edge_litert.interpreter"),
            ("tflite-runtime", "tflite_runtime.interpreter"))


def tflite_interpreter():
    """(runtime's package name, its Interpreter class) of the first runtime installed."""
    for package, module in RUNTIMES:
        try:
            return package, importlib.import_module(module).Interpreter
        except ImportError:
            continue
    return None, None


# KWS_TFLITE_KERNELS: which kernels run a .tflite (the runtime's OpResolverType)
KERNELS_ENV = "KWS_TFLITE_KERNELS"
KERNELS = {"default": None, "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
           "reference": "BUILTIN_REF"}


def kernel_options(Interpreter):
    """The Interpreter keyword arguments that KWS_TFLITE_KERNELS asks for ({} by default)."""
    kind = os.environ.get(KERNELS_ENV, "default") or "default"
    if kind not in KERNELS:
        raise UserError(f"{KERNELS_ENV} must be one of {', '.join(KERNELS)}, got {kind!r}")
    if KERNELS[kind] is None:
        return {}
    resolvers = importlib.import_module(Interpreter.__module__).OpResolverType
    return {"experimental_op_resolver_type": getattr(resolvers, KERNELS[kind])}


def runtime_version(package):
    """The installed version of a runtime package ('unknown' without package metadata)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def check_threads(num_threads):
    if num_threads < 1:
        raise UserError(f"--threads must be 1 or more, got {num_threads}")


class TFLiteModel:
    """A .tflite file run by LiteRT: float32 [1, 16000] in, probabilities [1, n] out."""

    def __init__(self, path, num_threads=1, input_shape=(1, CLIP_SAMPLES)):
        check_threads(num_threads)
        runtime, Interpreter = tflite_interpreter()
        if Interpreter is None:
            raise UserError(f"{path}: a .tflite needs LiteRT: pip install ai-edge-litert "
                            "(on a Pi: pip install -r requirements-pi.txt)") from None
        options = kernel_options(Interpreter)
        try:
            self.interpreter = Interpreter(model_path=path, num_threads=num_threads, **options)
            self.interpreter.allocate_tensors()
        except TypeError:  # a runtime too old to choose its kernels
            if not options:
                raise
            raise UserError(f"{runtime} {runtime_version(runtime)} cannot choose its kernels "
                            f"({KERNELS_ENV}): unset it or upgrade {runtime}") from None
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if NEWER_MODEL.search(str(e)):
                version = runtime_version(runtime)
                raise UserError(
                    f"{path} was frozen for a newer runtime than the installed {runtime} "
                    f"{version} ({first.split('. ')[0]}): install a newer {runtime} (pip "
                    f"install --upgrade {runtime}) or use a model frozen for {runtime} "
                    f"{version} (the Pi bundle's are)") from None
            raise UserError(f"{path}: not a TFLite model ({first})") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if (len(inputs) != 1 or list(inputs[0]["shape"]) != list(input_shape)
                or inputs[0]["dtype"] != np.float32 or len(outputs) != 1):
            raise UserError(f"{path}: expected one float32 input {list(input_shape)} and one "
                            "output (a model written by freeze_graph.py)")
        self.input_shape = tuple(input_shape)
        self.input, self.output = inputs[0]["index"], outputs[0]["index"]
        self.num_outputs = int(outputs[0]["shape"][-1])

    def predict(self, samples):
        self.interpreter.set_tensor(self.input, samples.reshape(self.input_shape))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).reshape(-1)


class FrozenGraphModel:
    """A frozen .pb with the tutorial's interface, fed float samples at decoded_sample_data:0
    (past TensorFlow's 16-bit-PCM-only WAV decoder, so the project's reader decides)."""

    def __init__(self, path, num_threads=1):
        check_threads(num_threads)
        try:
            import tensorflow as tf
        except ImportError:
            raise UserError(f"{path}: a frozen .pb needs TensorFlow, which is not installed "
                            "(the Pi bundle runs .tflite models only)") from None
        from google.protobuf.message import DecodeError

        graph_def = tf.compat.v1.GraphDef()
        try:
            with open(path, "rb") as f:
                graph_def.ParseFromString(f.read())
        except (DecodeError, RuntimeWarning, ValueError) as e:
            raise UserError(f"{path}: not a TensorFlow GraphDef ({e})") from None
        names = {n.name for n in graph_def.node}
        missing = [t for t in (PB_SAMPLES, PB_OUTPUT) if t.split(":")[0] not in names]
        if missing:
            raise UserError(f"{path}: not a frozen speech graph (no {', '.join(missing)})")
        graph = tf.Graph()
        try:
            with graph.as_default():
                tf.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as e:
            raise UserError(f"{path}: cannot import the graph ({str(e).splitlines()[0]})") \
                from None
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=num_threads,
                                          inter_op_parallelism_threads=num_threads)
        self.session = tf.compat.v1.Session(graph=graph, config=config)
        self.num_outputs = int(graph.get_tensor_by_name(PB_OUTPUT).shape[-1])

    def predict(self, samples):
        feed = {PB_SAMPLES: samples.reshape(CLIP_SAMPLES, 1), PB_RATE: SAMPLE_RATE}
        return self.session.run(PB_OUTPUT, feed).reshape(-1)


class KerasModel:
    """A train.py checkpoint (.keras, labels.txt beside it), one clip at a time."""

    def __init__(self, path):
        from kws.checkpoint import load_checkpoint

        self.keras_model, self.labels = load_checkpoint(path)
        self.num_outputs = len(self.labels)
        self._predict = None

    def predict(self, samples):
        import tensorflow as tf

        if self._predict is None:
            @tf.function(input_signature=[tf.TensorSpec([1, CLIP_SAMPLES], tf.float32)])
            def probabilities(x):
                return tf.nn.softmax(self.keras_model(x, training=False))

            self._predict = probabilities
        return self._predict(samples.reshape(1, CLIP_SAMPLES)).numpy().reshape(-1)


class CachedFeaturesModel:
    """A model split at its front end, for streaming: kws.frontend computes the features, and
    only the frames a hop adds (FrameCache); the body (NAME_stream_body[_int8].tflite) runs on
    them. predict(window) recomputes every frame, as a whole model does."""

    def __init__(self, body_path, front_end_path, num_threads=1):
        self.front_end = FrontEnd.load(front_end_path)
        self.cache = FrameCache(self.front_end)
        self.body = TFLiteModel(body_path, num_threads, input_shape=(
            1, self.front_end.frames, self.front_end.mel.shape[1] if self.front_end.dct is None
            else self.front_end.dct.shape[1]))
        self.num_outputs = self.body.num_outputs
        self.path = body_path

    def predict(self, samples):
        return self.body.predict(self.front_end.window_features(samples))

    def predict_hop(self, window, advanced):
        return self.body.predict(self.cache.update(window, advanced))


def stream_files_for(model_path):
    """(body .tflite, front-end .npz) that freeze_graph.py wrote beside NAME[_int8].tflite."""
    stem, _ = os.path.splitext(model_path)
    int8 = stem.endswith("_int8")
    if int8:
        stem = stem[:-len("_int8")]
    return stem + ("_stream_body_int8.tflite" if int8 else "_stream_body.tflite"), \
        stem + "_stream.npz"


class FoldedModel:
    """A model of more labels than the 12 competition classes, folded into them (every other
    word adds to `_unknown_`), as the submissions and the Pi script fold it."""

    def __init__(self, model, labels):
        self.model = model
        self.matrix = np.eye(len(COMPETITION_LABELS), dtype=np.float32)[competition_index(labels)]
        self.num_outputs = len(COMPETITION_LABELS)

    def predict(self, samples):
        return self.model.predict(samples) @ self.matrix

    def predict_hop(self, window, advanced):
        return predict_hop(self.model, window, advanced) @ self.matrix


class AveragedModel:
    """Several models of the same labels as one, their probabilities averaged (an ensemble).
    Each keeps its own front-end cache, so a hop costs the sum of their hops."""

    def __init__(self, models):
        self.models = list(models)
        self.num_outputs = self.models[0].num_outputs

    def predict(self, samples):
        return np.mean([m.predict(samples) for m in self.models], axis=0)

    def predict_hop(self, window, advanced):
        return np.mean([predict_hop(m, window, advanced) for m in self.models], axis=0)


def predict_hop(model, window, advanced):
    """A model's scores for this hop's window: models that cache their front end
    (CachedFeaturesModel) compute only the new frames."""
    hop = getattr(model, "predict_hop", None)
    return hop(window, advanced) if hop else model.predict(window)


def load_streaming_model(path, labels_path=None, num_threads=1, stride_ms=20.0):
    """load_model for streams: a .tflite with its stream body beside it caches the front end's
    frames from hop to hop when the stride is a whole number of frame hops; other models, and
    other strides, run the whole window each hop. An all-words model comes folded into the 12
    classes, the labels streams are scored in."""
    body, front_end = stream_files_for(path)
    model = None
    if path.lower().endswith(".tflite") and os.path.isfile(body) and os.path.isfile(front_end):
        hop = FrontEnd.load(front_end).hop
        if round(stride_ms * SAMPLE_RATE / 1000) % hop == 0:
            _, labels = load_model(path, labels_path, num_threads)
            model = CachedFeaturesModel(body, front_end, num_threads)
            if model.num_outputs != len(labels):
                raise UserError(f"{body} has {model.num_outputs} outputs, {path} {len(labels)}")
    if model is None:
        model, labels = load_model(path, labels_path, num_threads, allow_keras=True)
    if not is_competition_labels(labels):
        return FoldedModel(model, labels), list(COMPETITION_LABELS)
    return model, labels


def load_streaming_models(paths, labels_path=None, num_threads=1, stride_ms=20.0):
    """load_streaming_model of one path, or of several averaged into one (AveragedModel);
    they must score the same labels."""
    loaded = [load_streaming_model(p, labels_path, num_threads, stride_ms) for p in paths]
    labels = loaded[0][1]
    for path, (_, other) in zip(paths[1:], loaded[1:]):
        if list(other) != list(labels):
            raise UserError(f"{path} scores {','.join(other)}, {paths[0]} {','.join(labels)}: "
                            "an ensemble needs the same labels in the same order")
    if len(loaded) == 1:
        return loaded[0]
    return AveragedModel([m for m, _ in loaded]), labels


def labels_path_for(model_path):
    """NAME_labels.txt beside NAME.pb / NAME.tflite (NAME_int8.tflite shares it), or labels.txt."""
    stem = os.path.splitext(model_path)[0]
    candidates = [stem + "_labels.txt"]
    if stem.endswith("_int8"):
        candidates.append(stem[:-len("_int8")] + "_labels.txt")
    candidates.append(os.path.join(os.path.dirname(model_path), "labels.txt"))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise UserError(f"no labels file beside {model_path} (looked for "
                    f"{', '.join(os.path.basename(c) for c in candidates)}); pass --labels")


def load_model(path, labels_path=None, num_threads=1, allow_keras=False):
    """(model with .predict(samples [16000]) -> probabilities [n], labels) for a .tflite, a .pb
    or, with allow_keras (and TensorFlow), a .keras checkpoint."""
    if not os.path.isfile(path):
        raise UserError(f"model not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".keras" and allow_keras:
        model = KerasModel(path)
        return model, read_labels(labels_path) if labels_path else model.labels
    if ext == ".tflite":
        model = TFLiteModel(path, num_threads)
    elif ext == ".pb":
        model = FrozenGraphModel(path, num_threads)
    else:
        raise UserError(f"{path}: expected a .pb or .tflite file"
                        + (" or a .keras checkpoint" if allow_keras else ""))
    labels = read_labels(labels_path or labels_path_for(path))
    if len(labels) != model.num_outputs:
        raise UserError(f"{path} has {model.num_outputs} outputs but its labels file has "
                        f"{len(labels)} labels")
    return model, labels
