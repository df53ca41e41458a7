"""freeze_graph's run: export a checkpoint (kws.export), check every exported model against
Keras on real or synthetic clips, and write the models, labels and NAME_info.json only when all
agree."""

import io
import json
import os
import sys
import wave

import numpy as np
import tensorflow as tf

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.calibration import pick_clips
from kws.checkpoint import load_checkpoint, model_stats
from kws.common import UserError, atomic_path, atomic_write_text, require_file
from kws.export import (
    DECODED_NODE,
    INPUT_NODE,
    OUTPUT_NODE,
    ExportError,
    float_ops,
    frozen_graph_def,
    label_folding,
    probabilities,
    run_tflite,
    stream_exports,
    tflite_model,
)
from kws.frontend import FrontEnd


def output_paths(frozen_path, labels_path=""):
    """{format or file: path} of everything a freeze writes beside frozen_path."""
    stem = os.path.splitext(frozen_path)[0]
    return {"pb": frozen_path, "tflite": stem + ".tflite", "int8": stem + "_int8.tflite",
            "stream": stem + "_stream_body.tflite",
            "stream_int8": stem + "_stream_body_int8.tflite", "stream_npz": stem + "_stream.npz",
            "labels": labels_path or stem + "_labels.txt", "info": stem + "_info.json"}


def to_pcm16(clips):
    """Round clips to 16-bit, as a WAV file holds them: (int16 [n, 16000], float32 [n, 16000])."""
    pcm = np.clip(np.round(clips * 32768.0), -32768, 32767).astype(np.int16)
    return pcm, pcm.astype(np.float32) / 32768.0


def wav_bytes(pcm):
    """A 16 kHz mono 16-bit WAV file's bytes of int16 samples."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def keras_probabilities(keras_model, clips, matrix=None, batch_size=64):
    """The reference: the Keras model's (folded) probabilities of clips [n, 16000]."""
    fn = tf.function(lambda x: probabilities(keras_model, x, matrix))
    return np.concatenate([fn(tf.constant(clips[i:i + batch_size])).numpy()
                           for i in range(0, len(clips), batch_size)])


def run_graph_def(graph_def, pcm, samples):
    """Probabilities of the frozen graph: WAV bytes into wav_data:0 for every clip, and the
    float samples into decoded_sample_data:0 for the first (the Pi's way of feeding it)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        out = [sess.run(f"{OUTPUT_NODE}:0", {f"{INPUT_NODE}:0": wav_bytes(p)}) for p in pcm]
        fed = sess.run(f"{OUTPUT_NODE}:0", {f"{DECODED_NODE}:0": samples[0][:, None],
                                            f"{DECODED_NODE}:1": SAMPLE_RATE})
    return np.concatenate(out), fed


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


def check_stream_exports(models, keras_probs, samples, float_tolerance, int8_agreement):
    """The numpy front end + body against Keras, as check_exports does for whole models."""
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


def check_size(path, size, max_bytes, allow_large):
    """A one-line UserError for a model over --max_bytes, unless --allow_large."""
    if size > max_bytes and not allow_large:
        raise UserError(f"{path} would be {size:,} bytes, over the {max_bytes:,}-byte limit; "
                        "shrink the model or pass --allow_large")


def load_keras(path):
    """(Keras model, labels) of a checkpoint that takes raw audio [batch, 16000]."""
    require_file(path, "checkpoint")
    keras_model, labels = load_checkpoint(path)
    shape = tuple(keras_model.input_shape)
    if shape[1:] != (CLIP_SAMPLES,):
        raise UserError(f"{path}: the model takes {shape}, not raw audio [batch, {CLIP_SAMPLES}]")
    return keras_model, labels


def export_models(args, keras_model, matrix, paths, calib):
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
    """Write the checked models, the labels and NAME_info.json; remove the stream files and
    streaming settings an earlier freeze left that this one did not write."""
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


def export_and_check(args, keras_model, matrix, paths, calib, check):
    """(models, report, failures): every requested format exported, then compared with Keras
    on the check clips; ExportError when one cannot be exported."""
    models = export_models(args, keras_model, matrix, paths, calib)
    pcm, samples = to_pcm16(check)
    reference = keras_probabilities(keras_model, samples, matrix)
    whole = {k: v for k, v in models.items() if not k.startswith("stream")}
    report, failures = check_exports(whole, reference, pcm, samples,
                                     args.float_tolerance, args.int8_agreement)
    stream_report, stream_failures = check_stream_exports(
        models, reference, samples, args.float_tolerance, args.int8_agreement)
    report.update(stream_report)
    return models, report, failures + stream_failures


def model_info(args, keras_model, labels, models, report, source, calib):
    """NAME_info.json's content (files filled in as they are written); notes what was not
    exported and which int8 ops stay float."""
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
    return info


def freeze(args):
    """The command behind freeze_graph.py (args: its checked flags). Returns the exit code: 0,
    or 1 when a model cannot be exported or differs from Keras (then nothing is written)."""
    paths = output_paths(args.frozen_path, args.output_labels)
    keras_model, model_labels = load_keras(args.checkpoint)
    matrix, labels = label_folding(model_labels, args.competition_labels)
    calib, check, source = pick_clips(args.checkpoint, args.calibration_data,
                                      args.num_calibration, args.num_check, args.seed,
                                      "int8" in args.formats)
    try:
        models, report, failures = export_and_check(args, keras_model, matrix, paths, calib,
                                                    check)
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
    info = model_info(args, keras_model, labels, models, report, source, calib)
    write_outputs(models, paths, labels, info)
    return 0
