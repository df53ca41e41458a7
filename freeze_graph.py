"""Freeze a train.py checkpoint into the files a Raspberry Pi runs: .pb, .tflite and int8 .tflite.

    python freeze_graph.py --checkpoint checkpoints/195/ep-085-vl-0.2231.keras \
        --frozen_path tf_files/frozen.pb --calibration_data data/train

Writes, beside --frozen_path (tf_files/frozen.pb by default):
- frozen.pb: a frozen TensorFlow GraphDef with the interface of the TF speech_commands tutorial
  (label_wav.py works unchanged): feed the bytes of a WAV file to `wav_data:0`, or float samples
  [16000, 1] to `decoded_sample_data:0` (and the rate to `decoded_sample_data:1`), and read the
  probabilities [1, n] from `labels_softmax:0`. `wav_data` goes through TensorFlow's DecodeWav:
  16 kHz 16-bit PCM only (any channel count, mixed to mono; padded or cropped to one second);
  another rate fails with an error, another encoding does not decode. Every other path (Keras,
  .tflite, make_submission_on_rpi.py, which feeds `decoded_sample_data`) reads any format and
  resamples;
- frozen.tflite: the same model as float TFLite, float32 samples [1, 16000] -> probabilities [1, n];
- frozen_int8.tflite: int8 weights and activations calibrated on --num_calibration training clips
  (float input and output; ops LiteRT cannot quantize stay float and are listed);
- frozen_labels.txt: one label per line; frozen_info.json: checkpoint, params, MACs, sizes, checks.
Every file is checked against the Keras model on --num_check clips before anything is written, and a
float model over --max_bytes (the Pi prize's 5,000,000 bytes) is refused unless --allow_large.
"""

import argparse
import contextlib
import io
import json
import os
import sys
import wave

import numpy as np

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.common import UserError, atomic_path, atomic_write_text, require_file, run_cli
from kws.folders import list_test_clips, scan_data_dir

INPUT_NODE = "wav_data"
DECODED_NODE = "decoded_sample_data"
OUTPUT_NODE = "labels_softmax"
RATE_CHECK_NODE = "check_sample_rate"
MAX_BYTES = 5_000_000
FORMATS = ("pb", "tflite", "int8", "stream")
NOISE_FRACTION = 0.1  # share of calibration clips cut from _background_noise_ (silence-like input)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", "--checkpoint_path", required=True,
                   help="a .keras checkpoint saved by train.py")
    p.add_argument("--frozen_path", "--output_file", default="tf_files/frozen.pb",
                   help="where to write the frozen graph; the .tflite files go beside it")
    p.add_argument("--output_labels", default="",
                   help="labels file to write (default: <frozen_path stem>_labels.txt)")
    p.add_argument("--formats", default=",".join(FORMATS),
                   help="comma-separated subset of pb,tflite,int8,stream to write (stream: the "
                        "network after a log-mel/MFCC front end, for streaming; skipped for "
                        "raw-audio models)")
    p.add_argument("--calibration_data", default="",
                   help="comma-separated folders of training clips for int8 calibration and the "
                        "checks (a data dir train.py reads, or a folder of WAVs); default: the "
                        "data_dir of the checkpoint's config.json")
    p.add_argument("--num_calibration", type=int, default=200,
                   help="clips fed to the int8 calibration")
    p.add_argument("--num_check", type=int, default=50,
                   help="clips on which every exported model must agree with the Keras model")
    p.add_argument("--competition_labels", action="store_true",
                   help="fold every word outside the 12 competition labels into _unknown_ "
                        "(for models trained on all words)")
    p.add_argument("--max_bytes", type=int, default=MAX_BYTES,
                   help="refuse a model file larger than this (the Pi prize limit)")
    p.add_argument("--allow_large", action="store_true", help="write models over --max_bytes")
    p.add_argument("--float_tolerance", type=float, default=1e-4,
                   help="largest allowed |p_exported - p_keras| for the float models")
    p.add_argument("--int8_agreement", type=float, default=0.9,
                   help="smallest allowed share of clips where int8 and Keras agree on top-1")
    p.add_argument("--seed", type=int, default=0, help="seed for picking calibration clips")
    return p


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    args.formats = [f for f in args.formats.split(",") if f]
    bad = [f for f in args.formats if f not in FORMATS]
    if bad or not args.formats:
        raise UserError(f"--formats takes a comma-separated subset of {','.join(FORMATS)}, "
                        f"got {','.join(args.formats) or 'nothing'}")
    if args.num_calibration < 1 or args.num_check < 1:
        raise UserError("--num_calibration and --num_check must be >= 1")
    if not args.frozen_path.endswith(".pb"):
        raise UserError(f"--frozen_path must end in .pb, got {args.frozen_path}")
    if not 0 <= args.int8_agreement <= 1:
        raise UserError(f"--int8_agreement must be in [0, 1], got {args.int8_agreement}")
    require_file(args.checkpoint, "checkpoint")
    for folder in (d for d in args.calibration_data.split(",") if d):
        if not os.path.isdir(folder):
            raise UserError(f"calibration folder not found: {folder}")
    return args


def output_paths(frozen_path, labels_path=""):
    stem = os.path.splitext(frozen_path)[0]
    return {"pb": frozen_path, "tflite": stem + ".tflite", "int8": stem + "_int8.tflite",
            "stream": stem + "_stream_body.tflite",
            "stream_int8": stem + "_stream_body_int8.tflite", "stream_npz": stem + "_stream.npz",
            "labels": labels_path or stem + "_labels.txt", "info": stem + "_info.json"}


# ---- the exported function ----------------------------------------------------------------
def label_folding(labels, competition):
    """(matrix [n, m] that maps model probabilities onto the output labels, or None; labels).

    With competition=True, words outside the competition's 12 labels add to _unknown_, as the
    winning entry did for its 32-class models.
    """
    if not competition:
        return None, list(labels)
    from kws.labels import SILENCE_LABEL, UNKNOWN_LABEL, competition_label

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
    import tensorflow as tf

    logits = keras_model(samples, training=False)
    if matrix is None:
        return tf.nn.softmax(logits, name=name)
    return tf.identity(tf.matmul(tf.nn.softmax(logits), tf.constant(matrix)), name=name)


def _prune(graph_def, output):
    """Keep only the nodes the output depends on (drops the tf.function's Identity output)."""
    import tensorflow as tf

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
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

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
    import keras

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
    model.tflite_bytes: builtin ops only, and in int8 the log-mel/MFCC front end stays float.
    """
    from kws.export import tflite_bytes


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
    from kws.export import tflite_bytes
    from kws.frontend import FrontEnd
    from kws.layers import front_end_layer

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


def check_stream_exports(models, keras_probs, samples, float_tolerance, int8_agreement):
    """The numpy front end + body against Keras, as check_exports does for whole models."""
    from kws.frontend import FrontEnd

    report, failures = {}, []
    if "stream_npz" not in models:
        return report, failures
    front = FrontEnd(models["stream_npz"])
    features = np.stack([front.window_features(c) for c in samples])
    for fmt in ("stream", "stream_int8"):
        if fmt not in models:
            continue
        probs = run_tflite(models[fmt], features)
        diff = float(np.abs(probs - keras_probs).max())
        agree = float(np.mean(probs.argmax(axis=1) == keras_probs.argmax(axis=1)))
        report[fmt] = {"clips": len(samples), "max_abs_diff": diff, "top1_agreement": agree}
        if fmt == "stream_int8" and agree < int8_agreement:
            failures.append(f"stream int8 body agrees with Keras on top-1 for {agree:.1%}")
        if fmt == "stream" and not diff <= 10 * float_tolerance:
            failures.append(f"stream: numpy front end + body differ from Keras by up to "
                            f"{diff:.2g} (> {10 * float_tolerance:g})")
    return report, failures


class ExportError(Exception):
    """The model could not be exported or does not match the Keras model (exit code 1)."""


# ---- clips for calibration and checks -----------------------------------------------------
def find_clips(folder):
    """(clip paths, background-noise paths) of a data dir train.py reads or a flat WAV folder."""

    if not os.path.isdir(folder):
        raise UserError(f"calibration folder not found: {folder}")
    try:
        data = scan_data_dir(folder)
    except UserError:  # no word folders: a flat folder of clips
        return list_test_clips(folder)[0], []
    paths = [os.path.join(data.root, w, f) for w, files in data.words.items() for f in files]
    return paths, data.noise_files


def config_data_dirs(checkpoint_path):
    """data_dir from the config.json train.py wrote beside the checkpoint, if it still exists."""
    config = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), "config.json")
    if not os.path.isfile(config):
        return []
    try:
        with open(config, encoding="utf-8") as f:
            data_dir = json.load(f).get("data_dir") or ""
    except (OSError, ValueError):
        return []
    dirs = [d for d in str(data_dir).split(",") if d]
    return dirs if dirs and all(os.path.isdir(d) for d in dirs) else []


def noise_crops(noise_paths, count, rng):
    """count one-second crops of background noise at random gains in [0, 1]."""
    from kws.audio import AudioError, read_wav

    recordings = []
    for path in noise_paths:
        try:
            recordings.append(read_wav(path, num_samples=None))
        except AudioError as e:
            print(f"warning: skipped noise file {e}", file=sys.stderr)
    recordings = [r for r in recordings if len(r) >= CLIP_SAMPLES]
    crops = []
    for _ in range(count if recordings else 0):
        r = recordings[rng.randint(len(recordings))]
        start = rng.randint(len(r) - CLIP_SAMPLES + 1)
        crops.append(r[start:start + CLIP_SAMPLES] * rng.uniform(0, 1))
    return np.asarray(crops, np.float32).reshape(-1, CLIP_SAMPLES)


def load_clips(dirs, num_calibration, num_check, seed):
    """(calibration clips [n, 16000], check clips [m, 16000]) drawn at random from dirs.

    The two sets are disjoint when there are enough clips; with few, the checks reuse clips.
    """
    from kws.audio import read_many

    paths, noise = [], []
    for d in dirs:
        p, n = find_clips(d)
        paths += p
        noise += n
    rng = np.random.RandomState(seed)
    num_noise = int(num_calibration * NOISE_FRACTION) if noise else 0
    order = rng.permutation(len(paths))
    calib_idx = order[:num_calibration - num_noise]
    check_idx = order[len(calib_idx):len(calib_idx) + num_check]
    if len(check_idx) < num_check:
        check_idx = np.concatenate([check_idx, order[:num_check - len(check_idx)]])
    wanted = sorted(set(calib_idx.tolist()) | set(check_idx.tolist()))
    audio, kept = read_many([paths[i] for i in wanted])
    row = {wanted[k]: r for r, k in enumerate(kept)}
    calib = audio[[row[i] for i in calib_idx if i in row]]
    check = audio[[row[i] for i in check_idx if i in row]]
    calib = np.concatenate([calib, noise_crops(noise, num_noise, rng)])
    if (num_calibration and len(calib) == 0) or len(check) == 0:
        raise UserError(f"no readable clips in {','.join(dirs)}")
    return calib, check


def synthetic_clips(count, seed):
    """Noise and tones at several volumes: enough to compare float exports with Keras."""
    rng = np.random.RandomState(seed)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    clips = []
    for i in range(count):
        gain = 10 ** rng.uniform(-3, 0)
        if i % 2:
            clip = np.sin(2 * np.pi * rng.uniform(100, 3000) * t) * gain
        else:
            clip = rng.uniform(-1, 1, CLIP_SAMPLES) * gain
        clips.append(clip)
    return np.asarray(clips, np.float32)


def to_pcm16(clips):
    """Round clips to 16-bit, as a WAV file holds them: (int16 [n, 16000], float32 [n, 16000])."""
    pcm = np.clip(np.round(clips * 32768.0), -32768, 32767).astype(np.int16)
    return pcm, pcm.astype(np.float32) / 32768.0


def wav_bytes(pcm):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


# ---- checks -------------------------------------------------------------------------------
def keras_probabilities(keras_model, clips, matrix=None, batch_size=64):
    import tensorflow as tf

    fn = tf.function(lambda x: probabilities(keras_model, x, matrix))
    return np.concatenate([fn(tf.constant(clips[i:i + batch_size])).numpy()
                           for i in range(0, len(clips), batch_size)])


def run_graph_def(graph_def, pcm, samples):
    """Probabilities of the frozen graph: WAV bytes into wav_data:0 for every clip, and the
    float samples into decoded_sample_data:0 for the first (the Pi's way of feeding it)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        out = [sess.run(f"{OUTPUT_NODE}:0", {f"{INPUT_NODE}:0": wav_bytes(p)}) for p in pcm]
        fed = sess.run(f"{OUTPUT_NODE}:0", {f"{DECODED_NODE}:0": samples[0][:, None],
                                            f"{DECODED_NODE}:1": SAMPLE_RATE})
    return np.concatenate(out), fed


def run_tflite(model_bytes, samples):
    from ai_edge_litert.interpreter import Interpreter

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


def float_ops(model_bytes):
    """Sorted names of the ops of a quantized model that still compute in float."""
    from kws.export import tflite_ops


    return sorted(op for op, dtypes in tflite_ops(model_bytes).items()
                  if "float32" in dtypes and op not in ("QUANTIZE", "DEQUANTIZE"))


def check_exports(models, keras_probs, pcm, samples, float_tolerance, int8_agreement):
    """Compare every exported model with Keras; returns (report dict, list of failures)."""
    report, failures = {}, []
    top1 = keras_probs.argmax(axis=1)
    for fmt, data in models.items():
        if fmt == "pb":
            probs, fed = run_graph_def(data, pcm, samples)
            diff_fed = float(np.abs(fed - keras_probs[:1]).max())
        else:
            probs, diff_fed = run_tflite(data, samples), 0.0
        if probs.shape != keras_probs.shape:
            failures.append(f"{fmt}: output shape {probs.shape[1:]} != Keras "
                            f"{keras_probs.shape[1:]}")
            continue
        diff = max(float(np.abs(probs - keras_probs).max()), diff_fed)
        agree = float(np.mean(probs.argmax(axis=1) == top1))
        report[fmt] = {"clips": len(samples), "max_abs_diff": diff, "top1_agreement": agree}
        if fmt == "int8" and agree < int8_agreement:
            failures.append(f"int8 agrees with Keras on top-1 for {agree:.1%} of {len(samples)} "
                            f"clips (< {int8_agreement:.0%})")
        if fmt != "int8" and not diff <= float_tolerance:
            failures.append(f"{fmt}: probabilities differ from Keras by up to {diff:.2g} "
                            f"(> {float_tolerance:g})")
    return report, failures


def check_size(path, size, max_bytes, allow_large):
    if size > max_bytes and not allow_large:
        raise UserError(f"{path} would be {size:,} bytes, over the {max_bytes:,}-byte limit; "
                        "shrink the model or pass --allow_large")


# ---- main ---------------------------------------------------------------------------------
def load_keras(path):
    from kws.checkpoint import load_checkpoint

    require_file(path, "checkpoint")  # before TensorFlow's import: a typo fails at once

    keras_model, labels = load_checkpoint(path)
    shape = tuple(keras_model.input_shape)
    if shape[1:] != (CLIP_SAMPLES,):
        raise UserError(f"{path}: the model takes {shape}, not raw audio [batch, {CLIP_SAMPLES}]")
    return keras_model, labels


def pick_clips(args, need_int8):
    """(calibration clips or None, check clips, description of where they came from)."""
    dirs = [d for d in args.calibration_data.split(",") if d]
    if not dirs:
        dirs = config_data_dirs(args.checkpoint)
        if dirs:
            print(f"note: no --calibration_data; using the checkpoint's data_dir {','.join(dirs)}",
                  file=sys.stderr)
    if dirs:
        calib, check = load_clips(dirs, args.num_calibration if need_int8 else 0,
                                  args.num_check, args.seed)
        return calib, check, ",".join(dirs)
    if need_int8:
        raise UserError("the int8 model needs --calibration_data DIR (training clips); or leave "
                        "it out with --formats pb,tflite")
    print("note: no --calibration_data; checking the float models on synthetic clips",
          file=sys.stderr)
    return None, synthetic_clips(args.num_check, args.seed), "synthetic"


def export(args, keras_model, matrix, paths, calib):
    """{format: bytes or GraphDef} of every requested format, size-checked on the way."""
    models = {}
    if "pb" in args.formats:
        models["pb"] = frozen_graph_def(keras_model, matrix)
        check_size(paths["pb"], models["pb"].ByteSize(), args.max_bytes, args.allow_large)
    if "tflite" in args.formats:
        models["tflite"] = tflite_model(keras_model, matrix)
        check_size(paths["tflite"], len(models["tflite"]), args.max_bytes,
                   args.allow_large)
    if "int8" in args.formats:
        models["int8"] = tflite_model(keras_model, matrix, representative=calib)
        check_size(paths["int8"], len(models["int8"]), args.max_bytes, args.allow_large)
    if "stream" in args.formats:
        models.update(stream_exports(keras_model, matrix, calib, "int8" in args.formats))
    return models


def write_outputs(models, paths, labels, info):
    for fmt, data in models.items():
        if fmt == "stream_npz":
            buffer = io.BytesIO()
            np.savez(buffer, **data)
            data = buffer.getvalue()
        blob = data.SerializeToString() if fmt == "pb" else data
        with atomic_path(paths[fmt]) as tmp:
            with open(tmp, "wb") as f:
                f.write(blob)
        info["files"][fmt] = {"path": paths[fmt], "size_bytes": len(blob)}
        print(f"wrote {paths[fmt]} ({len(blob):,} bytes)")
    atomic_write_text(paths["labels"], "\n".join(labels) + "\n")
    print(f"wrote {paths['labels']} ({len(labels)} labels)")
    # files of an earlier freeze that this one did not write would run beside the new model
    stale = [paths[k] for k in ("stream", "stream_int8", "stream_npz") if k not in models]
    stale.append(os.path.splitext(paths["pb"])[0] + "_streaming.json")  # settings chosen for it
    for path in stale:
        if os.path.exists(path):
            os.remove(path)
            print(f"removed {path} (from an earlier freeze)")
    atomic_write_text(paths["info"], json.dumps(info, indent=1) + "\n")


def main(argv=None):
    args = parse_args(argv)
    from kws.checkpoint import model_stats  # TensorFlow: after the flags are checked

    paths = output_paths(args.frozen_path, args.output_labels)
    keras_model, model_labels = load_keras(args.checkpoint)
    matrix, labels = label_folding(model_labels, args.competition_labels)
    calib, check, source = pick_clips(args, "int8" in args.formats)
    try:
        models = export(args, keras_model, matrix, paths, calib)
        pcm, samples = to_pcm16(check)
        reference = keras_probabilities(keras_model, samples, matrix)
        whole = {k: v for k, v in models.items() if not k.startswith("stream")}
        report, failures = check_exports(whole, reference, pcm, samples,
                                         args.float_tolerance, args.int8_agreement)
        stream_report, stream_failures = check_stream_exports(
            models, reference, samples, args.float_tolerance, args.int8_agreement)
        report.update(stream_report)
        failures += stream_failures
    except ExportError as e:
        print(f"error: {e}; nothing written", file=sys.stderr)
        return 1
    for fmt, r in report.items():
        print(f"check {fmt}: max |p - p_keras| = {r['max_abs_diff']:.2g}, top-1 agreement "
              f"{r['top1_agreement']:.1%} on {r['clips']} clips ({source})")
    if failures:
        print(f"error: exported model does not match Keras: {'; '.join(failures)}; nothing written",
              file=sys.stderr)
        return 1

    info = {"checkpoint": args.checkpoint, "labels": labels, **model_stats(keras_model),
            "checks": report, "check_clips": source, "files": {}}
    if "stream" in args.formats and "stream" not in models:
        print("note: no log-mel/MFCC front end (a raw-audio model): no stream body written",
              file=sys.stderr)
    if "int8" in models:
        info["int8_float_ops"] = float_ops(models["int8"])
        info["calibration_clips"] = len(calib)
        ops = ", ".join(info["int8_float_ops"])
        print(f"int8 model: ops still in float: {ops}" if ops else
              "int8 model: every op runs in int8 (float only at the input and output)")
    write_outputs(models, paths, labels, info)
    return 0


if __name__ == "__main__":
    run_cli(main)
