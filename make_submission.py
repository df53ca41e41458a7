"""Label every clip of a folder with a trained model: Kaggle submission and all class probabilities.

    python make_submission.py --checkpoint checkpoints/seed195/ep-040-vl-0.1234.keras \
        --test_data data/test/audio --submission_fn submissions/seed195.csv

Writes, with SUB the submission path without `.csv`:
  SUB.csv            fname,label: Kaggle labels (silence, unknown, the ten commands)
  SUB.probs.csv      fname,<model label>...: softmax probabilities, averaged over the TTA variants
  SUB.probs.u8       uint8 [n_clips, n_labels] = round(probability * 255), C order, no header
  SUB.probs.json     the sidecar of SUB.probs.u8: shape, labels, fnames, unreadable clips, flags
  SUB.confusion.png  when the true labels are known (`<label>/*.wav` folders, or --answers KEY.csv)
fname is the path relative to --test_data: `clip_000044442.wav` for Kaggle's flat `test/audio`,
`yes/0a7c2a8d_nohash_0.wav` for labelled folders (basenames repeat across those).

An all-words model (labels beyond the 12 competition classes) is mapped to the 12 classes for the
submission as convert_to_12_classes.py does (--unknown_mode); its probability files keep every word.
Unreadable clips are skipped by the decoder, labelled `silence` (probability 1) in every output,
listed under "unreadable" in SUB.probs.json and reported in one warning at the end.

Clips go through in chunks (--chunk_size): each chunk is decoded in parallel threads while the
model labels the previous one in large batches, and its probabilities are saved in SUB.csv.parts/.
A killed run started again with the same inputs continues from the chunks already saved; other
inputs (checkpoint, clips, TTA flags, chunk size) start afresh. The folder goes once all is written.
--benchmark N times decoding and the model on N clips and writes nothing.
"""

import argparse
import glob
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from input_data import list_test_clips
from kws.audio import CLIP_SAMPLES, read_many
from kws.common import (
    UserError,
    atomic_path,
    atomic_write_text,
    remove_partial_files,
    require_file,
    run_cli,
    write_metrics,
)
from kws.labels import (
    COMPETITION_LABELS,
    SILENCE_LABEL,
    UNKNOWN_MODES,
    competition_label,
    model_label,
    read_answers,
    submission_label,
    to_12_classes,
)
from kws.probs import (
    output_paths,
    print_label_counts,
    write_probs_csv,
    write_probs_u8,
    write_submission,
)

MANIFEST_VERSION = 1


# ---- test-time augmentation ---------------------------------------------------------------------
class Variant:
    """One test-time variant of a batch of clips [B, 16000]; `name` enters the resume manifest."""

    def __init__(self, kind, value=None):
        self.kind, self.value = kind, value
        self.name = kind if value is None else f"{kind}:{value:g}"

    def __call__(self, clips):
        if self.kind == "shift":
            return shift_clips(clips, int(self.value))
        if self.kind == "gain":
            return np.clip(clips * np.float32(self.value), -1.0, 1.0)
        if self.kind == "stretch":
            return stretch_clips(clips, self.value)
        return clips


def shift_clips(clips, shift):
    """Move the audio by `shift` samples (negative: earlier), filling with zeros."""
    out = np.zeros_like(clips)
    if shift >= 0:
        out[:, shift:] = clips[:, :clips.shape[1] - shift]
    else:
        out[:, :shift] = clips[:, -shift:]
    return out


def stretch_clips(clips, rate):
    """Time-stretch (rate > 1: faster, shorter) with librosa, then centre pad/crop to 16000."""
    import librosa

    stretched = librosa.effects.time_stretch(clips, rate=rate).astype(np.float32)
    length = stretched.shape[1]
    if length >= CLIP_SAMPLES:
        start = (length - CLIP_SAMPLES) // 2
        return stretched[:, start:start + CLIP_SAMPLES]
    out = np.zeros((len(clips), CLIP_SAMPLES), np.float32)
    start = (CLIP_SAMPLES - length) // 2
    out[:, start:start + length] = stretched
    return out


def tta_variants(shifts=(), gains=(), stretches=()):
    """Identity plus one variant per value; probabilities are averaged over all of them."""
    for s in shifts:
        if not -CLIP_SAMPLES < s < CLIP_SAMPLES:
            raise UserError(f"--tta_shift {s}: must be within +-{CLIP_SAMPLES - 1} samples")
    for g in gains:
        if not 0 < g <= 100:
            raise UserError(f"--tta_gain {g}: must be in (0, 100]")
    for r in stretches:
        if not 0.25 <= r <= 4:
            raise UserError(f"--tta_stretch {r}: must be in [0.25, 4]")
    return ([Variant("identity")] + [Variant("shift", s) for s in shifts]
            + [Variant("gain", g) for g in gains] + [Variant("stretch", r) for r in stretches])


def comma_list(cast):
    def parse(text):
        try:
            return [cast(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers, got {text!r}") from None
    return parse


# ---- the model -----------------------------------------------------------------------------------
def configure_threads(threads):
    """Limit TensorFlow to `threads` CPU threads; must run before the first TF op."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already running (e.g. called twice in one process)
        print("warning: --threads ignored, TensorFlow was already initialised", file=sys.stderr)


def load_model(checkpoint):
    """(keras model, model labels) via model.load_checkpoint, which checks labels vs outputs."""
    require_file(checkpoint, "checkpoint")  # before TensorFlow loads: a typo fails at once
    import model as model_lib

    keras_model, labels = model_lib.load_checkpoint(checkpoint)
    return keras_model, [model_label(label) for label in labels]


def make_predictor(keras_model):
    """A compiled function: float32 audio [B, 16000] -> softmax probabilities [B, k]."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, CLIP_SAMPLES], tf.float32)])
    def predict(clips):
        logits = keras_model(clips, training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    return lambda clips: predict(np.ascontiguousarray(clips, dtype=np.float32)).numpy()


def predict_chunk(predict, clips, variants, batch_size):
    """Mean probability over the variants, computed in batches of batch_size."""
    out = []
    for start in range(0, len(clips), batch_size):
        batch = clips[start:start + batch_size]
        out.append(sum(predict(variant(batch)) for variant in variants) / len(variants))
    return np.concatenate(out).astype(np.float32)


# ---- resumable chunked labelling -----------------------------------------------------------------
def file_sha1(path):
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_manifest(checkpoint, labels, test_data, fnames, paths, variants, chunk_size):
    """What the saved chunks depend on; a rerun reuses them only if this is unchanged."""
    clips = hashlib.sha1()
    for fname, path in zip(fnames, paths):
        clips.update(f"{fname}\0{os.path.getsize(path)}\n".encode())
    return {"version": MANIFEST_VERSION, "checkpoint": os.path.realpath(checkpoint),
            "checkpoint_sha1": file_sha1(checkpoint), "labels": labels,
            "test_data": os.path.realpath(test_data), "clips": len(fnames),
            "clips_sha1": clips.hexdigest(), "tta": [v.name for v in variants],
            "chunk_size": chunk_size}


def prepare_work_dir(work_dir, manifest, fresh=False):
    """Keep work_dir if it was made for the same manifest, else start it afresh."""
    manifest_path = os.path.join(work_dir, "manifest.json")
    if os.path.isdir(work_dir):
        old = None
        if os.path.isfile(manifest_path):
            try:
                with open(manifest_path, encoding="utf-8") as f:
                    old = json.load(f)
            except (OSError, ValueError):
                old = None
        elif os.listdir(work_dir):
            raise UserError(f"{work_dir} exists and is not a make_submission work folder")
        if old == manifest and not fresh:
            remove_partial_files(work_dir)  # a killed run's half-written chunk
            return True
        if old is not None:
            print(f"note: inputs differ from the run saved in {work_dir}: starting afresh",
                  file=sys.stderr)
        remove_work_dir(work_dir)
    os.makedirs(work_dir)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    return False


def part_path(work_dir, chunk):
    return os.path.join(work_dir, f"chunk-{chunk:06d}.npz")


def save_part(work_dir, chunk, probs, ok):
    with atomic_path(part_path(work_dir, chunk)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, probs=probs, ok=ok)


def load_part(work_dir, chunk, size, num_labels):
    """A saved chunk's (probs, ok), or None if it is missing or does not fit."""
    path = part_path(work_dir, chunk)
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as part:
            probs, ok = part["probs"], part["ok"]
    except (OSError, ValueError, KeyError):
        return None
    if probs.shape != (size, num_labels) or ok.shape != (size,):
        return None
    return probs, ok


def decode_chunk(paths, workers, errors):
    """Decode a chunk; unreadable files add their AudioError to errors (warned once at the end)."""
    return read_many(paths, workers=workers, errors=errors)


def label_clips(predict, paths, num_labels, variants, batch_size, chunk_size, work_dir,
                workers=None):
    """Probabilities [n, k] float32 and readable mask [n] for all paths, chunk by chunk.

    Decoding of the next chunk overlaps the model on the current one. Chunks already in work_dir
    are loaded, not recomputed. Returns (probs, ok, clips labelled now, seconds spent on them,
    the AudioErrors of the clips decoded now).
    """
    from tqdm import tqdm

    n = len(paths)
    chunks = [(c, s, min(s + chunk_size, n)) for c, s in enumerate(range(0, n, chunk_size))]
    probs = np.zeros((n, num_labels), np.float32)
    ok = np.zeros(n, bool)
    todo = []
    for c, start, end in chunks:
        part = load_part(work_dir, c, end - start, num_labels)
        if part is None:
            todo.append((c, start, end))
        else:
            probs[start:end], ok[start:end] = part
    done_before = n - sum(end - start for _, start, end in todo)
    if done_before:
        print(f"resuming: {done_before} of {n} clips already labelled in {work_dir}",
              file=sys.stderr)
    began = time.perf_counter()
    errors = []
    with ThreadPoolExecutor(1) as pool, tqdm(total=n, initial=done_before, unit="clip",
                                             desc="label", mininterval=1.0) as bar:
        pending = (pool.submit(decode_chunk, paths[todo[0][1]:todo[0][2]], workers, errors)
                   if todo else None)
        for k, (c, start, end) in enumerate(todo):
            clips, kept = pending.result()
            if k + 1 < len(todo):
                nxt = todo[k + 1]
                pending = pool.submit(decode_chunk, paths[nxt[1]:nxt[2]], workers, errors)
            chunk_probs = np.zeros((end - start, num_labels), np.float32)
            chunk_ok = np.zeros(end - start, bool)
            if len(kept):
                chunk_probs[kept] = predict_chunk(predict, clips, variants, batch_size)
                chunk_ok[kept] = True
            save_part(work_dir, c, chunk_probs, chunk_ok)
            probs[start:end], ok[start:end] = chunk_probs, chunk_ok
            bar.update(end - start)
    return probs, ok, n - done_before, time.perf_counter() - began, errors


def remove_work_dir(work_dir):
    """Delete the chunks, then the manifest: a kill halfway leaves a folder a rerun can use."""
    for name in os.listdir(work_dir):
        if name != "manifest.json":
            os.remove(os.path.join(work_dir, name))
    shutil.rmtree(work_dir)


def remove_stale_temp_files(outputs):
    """The temp files (see common.atomic_path) that a killed run left beside these outputs."""
    for path in outputs.values():
        folder, name = os.path.split(os.path.abspath(path))
        pattern = "." + glob.escape(name) + ".*.part*"
        for tmp in glob.glob(os.path.join(glob.escape(folder), pattern)):
            os.remove(tmp)


def unreadable_warning(unreadable, paths_by_fname, errors):
    """One line: the count, and the first few clips with the decoder's reason where known."""
    messages = [str(e) for e in errors]
    shown = [next((m for m in messages if m.startswith(paths_by_fname[f] + ": ")), f)
             for f in unreadable[:3]]
    return (f"warning: {len(unreadable)} unreadable clips labelled silence (probability 1): "
            + "; ".join(shown) + (" ..." if len(unreadable) > 3 else ""))


# ---- outputs -------------------------------------------------------------------------------------
def fill_unreadable(probs, ok, labels):
    """Rows of unreadable clips become `_silence_` with probability 1 (uniform without one)."""
    probs = probs.copy()
    bad = ~ok
    probs[bad] = 0.0
    if SILENCE_LABEL in labels:
        probs[bad, labels.index(SILENCE_LABEL)] = 1.0
    else:
        probs[bad] = 1.0 / len(labels)
    return probs


def submission_from_probs(probs, labels, ok, unknown_mode):
    probs12 = to_12_classes(probs, labels, unknown_mode)
    sub = [submission_label(COMPETITION_LABELS[i]) for i in probs12.argmax(axis=1)]
    return [label if good else "silence" for label, good in zip(sub, ok)]


# ---- evaluation ----------------------------------------------------------------------------------
def evaluate(fnames, sub_labels, truth, png_path, title=""):
    """Accuracy, per-class recall and a confusion-matrix PNG over the clips with a known label."""
    index = {label: i for i, label in enumerate(COMPETITION_LABELS)}
    confusion = np.zeros((len(COMPETITION_LABELS),) * 2, np.int64)
    for fname, predicted in zip(fnames, sub_labels):
        if fname in truth:
            confusion[index[competition_label(truth[fname])], index[model_label(predicted)]] += 1
    scored = int(confusion.sum())
    if scored == 0:
        raise UserError("none of the labelled clips matches a clip of the submission")
    accuracy = float(np.trace(confusion)) / scored
    print(f"accuracy {accuracy:.4f} on {scored} labelled clips"
          + (f" (of {len(fnames)})" if scored < len(fnames) else ""))
    print("class        recall   clips")
    for i, label in enumerate(COMPETITION_LABELS):
        total = confusion[i].sum()
        recall = f"{confusion[i, i] / total:.4f}" if total else "   -  "
        print(f"{submission_label(label):<12} {recall}  {total:6d}")
    save_confusion_png(confusion, png_path, f"{title} accuracy {accuracy:.4f} (n={scored})")
    return accuracy, confusion


def recall_by_label(confusion):
    """{Kaggle label: recall or None} of a 12-class confusion matrix (rows: truth)."""
    totals = confusion.sum(axis=1)
    return {submission_label(label): float(confusion[i, i] / totals[i]) if totals[i] else None
            for i, label in enumerate(COMPETITION_LABELS)}


def save_confusion_png(confusion, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [submission_label(label) for label in COMPETITION_LABELS]
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title.strip(), fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# ---- benchmark -----------------------------------------------------------------------------------
def benchmark(predict, paths, batch_size, num_clips, workers=None):
    """Clips per second of decoding, of the model, and of both one after the other (no TTA)."""
    paths = [paths[i % len(paths)] for i in range(num_clips)]
    began = time.perf_counter()
    clips, _ = read_many(paths, workers=workers)
    decode_s = time.perf_counter() - began
    if len(clips) == 0:
        raise UserError("no readable clip to benchmark")
    predict(clips[:batch_size])  # warm-up: tracing and first-call allocations
    began = time.perf_counter()
    predict_chunk(predict, clips, [Variant("identity")], batch_size)
    model_s = time.perf_counter() - began
    n = len(clips)
    return {"clips": n, "decode_clips_per_s": n / decode_s, "model_clips_per_s": n / model_s,
            "total_clips_per_s": n / (decode_s + model_s)}


# ---- main ----------------------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="trained model (.keras) with "
                        "labels.txt in its folder")
    parser.add_argument("--test_data", required=True,
                        help="folder of clips: flat (Kaggle test/audio) or <label>/*.wav")
    parser.add_argument("--submission_fn", help="submission CSV to write (required unless "
                        "--benchmark); other outputs go beside it")
    parser.add_argument("--batch_size", type=int, default=256, help="clips per model call")
    parser.add_argument("--chunk_size", type=int, default=4096,
                        help="clips decoded and saved together (the unit of resuming)")
    parser.add_argument("--tta_shift", type=comma_list(int), default=[],
                        help="test-time time shifts in samples (one variant each); a list that "
                             "starts negative needs '=': --tta_shift=-1500,1500")
    parser.add_argument("--tta_gain", type=comma_list(float), default=[],
                        help="test-time gains, e.g. 0.8,1.2 (one variant each)")
    parser.add_argument("--tta_stretch", type=comma_list(float), default=[],
                        help="test-time time-stretch rates, e.g. 0.9,1.1 (one variant each)")
    parser.add_argument("--unknown_mode", choices=UNKNOWN_MODES, default="sum",
                        help="all-words models: how other words combine into unknown")
    parser.add_argument("--answers", help="CSV fname,label with the true labels, to score the "
                        "submission (labelled folders are scored without it)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for TensorFlow and decoding (0: all)")
    parser.add_argument("--metrics_json", default="",
                        help="also write the figures (clips, speed, accuracy, recall) as JSON")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore chunks saved by an interrupted run")
    parser.add_argument("--benchmark", type=int, default=0, metavar="N",
                        help="only time decoding and the model on N clips (no TTA), write nothing")
    return parser


def check_args(args):
    if args.batch_size < 1 or args.chunk_size < 1:
        raise UserError("--batch_size and --chunk_size must be >= 1")
    if args.threads < 0 or args.benchmark < 0:
        raise UserError("--threads and --benchmark must be >= 0")
    if not args.benchmark and not args.submission_fn:
        raise UserError("--submission_fn is required (unless --benchmark)")
    if args.answers:
        require_file(args.answers, "answers file")


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    variants = tta_variants(args.tta_shift, args.tta_gain, args.tta_stretch)
    paths, folder_labels = list_test_clips(args.test_data)
    fnames = [os.path.relpath(p, args.test_data).replace(os.sep, "/") for p in paths]
    configure_threads(args.threads)
    workers = args.threads or None
    keras_model, labels = load_model(args.checkpoint)
    predict = make_predictor(keras_model)
    if args.benchmark:
        result = benchmark(predict, paths, args.batch_size, args.benchmark, workers)
        print(f"benchmark on {result['clips']} clips, threads {args.threads or 'all'}: "
              f"decode {result['decode_clips_per_s']:.0f} clips/s, model "
              f"{result['model_clips_per_s']:.0f} clips/s, both {result['total_clips_per_s']:.0f}"
              " clips/s")
        return 0

    outputs = output_paths(args.submission_fn)
    work_dir = args.submission_fn + ".parts"
    manifest = run_manifest(args.checkpoint, labels, args.test_data, fnames, paths, variants,
                            args.chunk_size)
    prepare_work_dir(work_dir, manifest, args.fresh)
    print(f"labelling {len(paths)} clips from {args.test_data} with {args.checkpoint} "
          f"({len(labels)} labels, TTA: {', '.join(v.name for v in variants)})", file=sys.stderr)
    remove_stale_temp_files(outputs)
    probs, ok, labelled, seconds, errors = label_clips(predict, paths, len(labels), variants,
                                                       args.batch_size, args.chunk_size, work_dir,
                                                       workers)
    if not ok.any():
        raise UserError(f"none of the {len(paths)} clips in {args.test_data} is readable audio")
    probs = fill_unreadable(probs, ok, labels)
    sub = submission_from_probs(probs, labels, ok, args.unknown_mode)
    unreadable = [f for f, good in zip(fnames, ok) if not good]
    write_probs_csv(outputs["probs_csv"], fnames, labels, probs)
    write_probs_u8(outputs["probs_u8"], outputs["probs_json"], fnames, labels, probs,
                   {"unreadable": unreadable, "checkpoint": args.checkpoint,
                    "tta": [v.name for v in variants]})
    write_submission(outputs["submission"], fnames, sub)
    remove_work_dir(work_dir)
    if unreadable:
        print(unreadable_warning(unreadable, dict(zip(fnames, paths)), errors), file=sys.stderr)
    print_label_counts(sub)
    truth = read_answers(args.answers) if args.answers else (
        dict(zip(fnames, folder_labels)) if folder_labels else None)
    metrics = {"checkpoint": args.checkpoint, "test_data": args.test_data, "clips": len(fnames),
               "unreadable": len(unreadable), "tta": [v.name for v in variants],
               "clips_per_second": labelled / seconds if labelled else None}
    if truth is not None:
        accuracy, confusion = evaluate(fnames, sub, truth, outputs["confusion_png"],
                                       os.path.basename(args.checkpoint))
        metrics.update(accuracy=accuracy, scored_clips=int(confusion.sum()),
                       recall=recall_by_label(confusion))
    write_metrics(args.metrics_json, metrics)
    print(f"wrote {outputs['submission']}, {outputs['probs_csv']}, {outputs['probs_u8']} "
          f"(+ .json)" + (f", {outputs['confusion_png']}" if truth is not None else ""))
    if labelled:
        print(f"speed: {labelled} clips in {seconds:.1f} s = {labelled / seconds:.0f} clips/s "
              f"(decode + model, {len(variants)} TTA variant(s))")
    else:
        print("speed: every chunk was resumed from an earlier run, nothing labelled now")
    return 0


if __name__ == "__main__":
    run_cli(main)
