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

--test_list FILE labels the paths or URIs it lists (one a line) instead of a folder.
--runner ray runs the map step (decode a chunk, label it) on Ray Data actors, on this machine
or a Ray cluster (--ray_address); the driver saves and writes the same files, byte for byte.
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

from kws.audio import CLIP_SAMPLES, check_source, local_path, read_many
from kws.common import (
    UserError,
    atomic_path,
    atomic_write_text,
    remove_partial_files,
    require_file,
    run_cli,
    write_metrics,
)
from kws.folders import list_test_clips
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
RUNNERS = ("local", "ray")


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
    from kws.checkpoint import load_checkpoint

    require_file(checkpoint, "checkpoint")  # before TensorFlow loads: a typo fails at once

    keras_model, labels = load_checkpoint(checkpoint)
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
        local = local_path(path)
        size = os.path.getsize(local) if local and os.path.isfile(local) else -1
        clips.update(f"{fname}\0{size}\n".encode())
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


def chunk_probabilities(predict, clips, kept, size, num_labels, variants, batch_size):
    """(probs [size, k] float32, readable mask [size]) of a decoded chunk: the map step that
    every runner does the same way."""
    probs = np.zeros((size, num_labels), np.float32)
    ok = np.zeros(size, bool)
    if len(kept):
        probs[kept] = predict_chunk(predict, clips, variants, batch_size)
        ok[kept] = True
    return probs, ok


def local_chunks(predict, paths, todo, num_labels, variants, batch_size, workers=None):
    """The single-process runner: yields (chunk, probs, ok, errors) for each (chunk, start, end)
    of todo, decoding the next chunk in a thread while the model labels this one."""
    if not todo:
        return
    with ThreadPoolExecutor(1) as pool:
        def submit(item):
            errors = []
            return pool.submit(decode_chunk, paths[item[1]:item[2]], workers, errors), errors

        pending = submit(todo[0])
        for k, (c, start, end) in enumerate(todo):
            (clips, kept), errors = pending[0].result(), pending[1]
            if k + 1 < len(todo):
                pending = submit(todo[k + 1])
            probs, ok = chunk_probabilities(predict, clips, kept, end - start, num_labels,
                                            variants, batch_size)
            yield c, probs, ok, errors


def label_clips(predict, paths, num_labels, variants, batch_size, chunk_size, work_dir,
                workers=None, runner=None):
    """Probabilities [n, k] float32 and readable mask [n] for all paths, chunk by chunk.

    Chunks already in work_dir are loaded, not recomputed; the others go to the runner
    (default: local_chunks, in this process; runner(todo) for another engine, see RayRunner),
    which yields them in any order; each is saved as it comes. Returns (probs, ok, clips
    labelled now, seconds spent on them, the errors of the clips decoded now, in path order).
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
    errors = {}
    bounds = {c: (start, end) for c, start, end in todo}
    labelled = runner(todo) if runner is not None else local_chunks(
        predict, paths, todo, num_labels, variants, batch_size, workers)
    with tqdm(total=n, initial=done_before, unit="clip", desc="label", mininterval=1.0) as bar:
        for c, chunk_probs, chunk_ok, chunk_errors in labelled:
            start, end = bounds.pop(c)
            save_part(work_dir, c, chunk_probs, chunk_ok)
            probs[start:end], ok[start:end] = chunk_probs, chunk_ok
            errors[c] = chunk_errors
            bar.update(end - start)
    if bounds:
        raise UserError(f"the runner returned {len(todo) - len(bounds)} of {len(todo)} chunks")
    in_order = [e for c in sorted(errors) for e in errors[c]]
    return probs, ok, n - done_before, time.perf_counter() - began, in_order


# ---- a distributed engine: Ray Data --------------------------------------------------------------
RAY_HINT = "pip install 'ray[data]==2.60.0' (it is in requirements.txt: make setup installs it)"


def import_ray():
    """ray and ray.data, or a one-line UserError saying how to install them."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise UserError(f"--runner ray needs Ray Data ({e}): {RAY_HINT}") from None
    return ray


class ChunkLabeller:
    """A Ray Data actor: loads the model once, then labels whole chunks (decode + model, the
    functions the single-process runner uses) given as rows {chunk, paths}."""

    def __init__(self, checkpoint_ref, variants, batch_size, num_labels, threads):
        import tempfile

        import ray

        configure_threads(threads)
        files = ray.get(checkpoint_ref[0])  # a reference in a list: fetched here, by the actor
        folder = tempfile.mkdtemp(prefix="kws-labeller-")
        try:
            for name, data in files.items():
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(data)
            keras_model, _ = load_model(os.path.join(folder, "model.keras"))
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the model is in memory now
        self.predict = make_predictor(keras_model)
        self.variants, self.batch_size, self.num_labels = variants, batch_size, num_labels
        self.threads = threads or None

    def __call__(self, batch):
        out = {"chunk": [], "probs": [], "ok": [], "errors": []}
        for chunk, paths in zip(batch["chunk"], batch["paths"]):
            errors = []
            clips, kept = decode_chunk([str(p) for p in paths], self.threads, errors)
            probs, ok = chunk_probabilities(self.predict, clips, kept, len(paths),
                                            self.num_labels, self.variants, self.batch_size)
            out["chunk"].append(int(chunk))
            out["probs"].append(probs.tobytes())
            out["ok"].append(ok.tobytes())
            out["errors"].append("\n".join(str(e) for e in errors))
        return {"chunk": np.array(out["chunk"], np.int64),
                **{k: np.array(out[k], dtype=object) for k in ("probs", "ok", "errors")}}


class RayRunner:
    """The map step on Ray Data: one row per chunk, `map_batches` over a pool of ChunkLabeller
    actors (on this machine, or on the cluster that --ray_address names), results streamed back
    to this process, which saves and writes them as the local runner does."""

    def __init__(self, checkpoint, paths, variants, batch_size, num_labels, address="local",
                 workers=0, threads=1):
        import logging

        self.ray = import_ray()
        self.paths, self.num_labels = paths, num_labels
        self.variants, self.batch_size, self.threads = variants, batch_size, threads
        self.started = not self.ray.is_initialized()
        if self.started:
            repo = os.path.dirname(os.path.abspath(__file__))
            python_path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
            runtime_env = {"env_vars": {"PYTHONPATH": python_path, "TF_CPP_MIN_LOG_LEVEL": "3"}}
            if address != "local":  # a cluster: ship this repository's code to its workers
                runtime_env = {"working_dir": repo, "excludes": [
                    ".venv", ".git", "data", "checkpoints", "tf_files", "logs"],
                    "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}}
            self.ray.init(address=None if address == "local" else address,
                          runtime_env=runtime_env, include_dashboard=False,
                          log_to_driver=False, logging_level=logging.ERROR,
                          num_cpus=(workers or None) if address == "local" else None)
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        context = self.ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(cpus // max(threads, 1), 1)
        folder = os.path.dirname(os.path.abspath(checkpoint))
        with open(checkpoint, "rb") as f, open(os.path.join(folder, "labels.txt"), "rb") as g:
            self.model_ref = self.ray.put({"model.keras": f.read(), "labels.txt": g.read()})

    def __call__(self, todo):
        if not todo:
            return
        rows = [{"chunk": c, "paths": self.paths[start:end]} for c, start, end in todo]
        ds = self.ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(ChunkLabeller, batch_size=1, batch_format="numpy",
                            fn_constructor_args=([self.model_ref], self.variants,
                                                 self.batch_size, self.num_labels, self.threads),
                            compute=self.ray.data.ActorPoolStrategy(
                                size=min(self.workers, len(rows))),
                            num_cpus=self.threads)
        sizes = {c: end - start for c, start, end in todo}
        for row in ds.iter_rows():
            c = int(row["chunk"])
            probs = np.frombuffer(row["probs"], np.float32).reshape(sizes[c], self.num_labels)
            ok = np.frombuffer(row["ok"], bool)
            errors = row["errors"].split("\n") if row["errors"] else []
            yield c, probs.copy(), ok.copy(), errors

    def close(self):
        if self.started:
            self.ray.shutdown()


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


def benchmark_runner(args, predict, paths, labels, workers):
    """Clips/s of the whole labelling path of --runner (decode + model, chunked, no TTA) on
    --benchmark clips, the folder's repeated; chunks go to a temporary folder, removed."""
    import tempfile

    paths = [paths[i % len(paths)] for i in range(args.benchmark)]
    variants = [Variant("identity")]
    runner = make_runner(args, paths, variants, len(labels))
    predict(np.zeros((args.batch_size, CLIP_SAMPLES), np.float32))  # trace the local model
    try:
        with tempfile.TemporaryDirectory() as work_dir:
            _, ok, n, seconds, _ = label_clips(predict, paths, len(labels), variants,
                                               args.batch_size, args.chunk_size, work_dir,
                                               workers, runner)
    finally:
        if runner is not None:
            runner.close()
    # seconds include starting the engine's workers and loading their models: two runs of
    # different N give the rate without them, (N2 - N1) / (seconds2 - seconds1)
    return {"runner": args.runner, "clips": n, "readable": int(ok.sum()),
            "seconds": seconds, "clips_per_s": n / seconds, "chunk_size": args.chunk_size,
            "batch_size": args.batch_size, "threads": args.threads,
            "workers": runner.workers if runner is not None else 1}


# ---- main ----------------------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="trained model (.keras) with "
                        "labels.txt in its folder")
    parser.add_argument("--test_data",
                        help="folder of clips: flat (Kaggle test/audio) or <label>/*.wav")
    parser.add_argument("--test_list",
                        help="instead of --test_data: a text file of clips, one path or URI a "
                             "line (file://, or s3:// gs:// hdfs:// through pyarrow); the fname "
                             "of each is the line as written")
    parser.add_argument("--runner", choices=RUNNERS, default="local",
                        help="local: this process (decoding threads + TensorFlow); ray: the "
                             "decode + model map step on Ray Data actors, on this machine or a "
                             "Ray cluster (--ray_address); same outputs, byte for byte")
    parser.add_argument("--ray_address", default="local",
                        help="--runner ray: 'local' starts Ray on this machine; 'auto' or "
                             "ray://HOST:10001 joins a running cluster")
    parser.add_argument("--workers", type=int, default=0,
                        help="--runner ray: labelling actors (0: one per --threads CPUs of the "
                             "cluster)")
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
                        help="CPU threads for TensorFlow and decoding (0: all); with --runner "
                             "ray, per actor (0: 1)")
    parser.add_argument("--metrics_json", default="",
                        help="also write the figures (clips, speed, accuracy, recall) as JSON")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore chunks saved by an interrupted run")
    parser.add_argument("--benchmark", type=int, default=0, metavar="N",
                        help="only time decoding and the model on N clips (no TTA), write nothing; "
                             "with --benchmark_json, the whole labelling path of --runner too")
    parser.add_argument("--benchmark_json", default="",
                        help="--benchmark: label N clips (the folder's, repeated) through "
                             "--runner and write its clips/s here as JSON")
    return parser


def check_args(args):
    if args.batch_size < 1 or args.chunk_size < 1:
        raise UserError("--batch_size and --chunk_size must be >= 1")
    if args.threads < 0 or args.benchmark < 0:
        raise UserError("--threads and --benchmark must be >= 0")
    if not args.benchmark and not args.submission_fn:
        raise UserError("--submission_fn is required (unless --benchmark)")
    if bool(args.test_data) == bool(args.test_list):
        raise UserError("give one of --test_data (a folder) and --test_list (a file of clips)")
    if args.workers < 0:
        raise UserError("--workers must be >= 0")
    if args.runner != "ray" and (args.workers or args.ray_address != "local"):
        raise UserError("--workers and --ray_address need --runner ray")
    if args.answers:
        require_file(args.answers, "answers file")


def read_test_list(path):
    """(sources, fnames) of a --test_list file, sorted by fname: one path or URI a line, blank
    lines and `#` comments skipped; each clip's fname is its line as written."""
    require_file(path, "test list")
    with open(path, encoding="utf-8") as f:
        entries = [line.strip() for line in f]
    entries = sorted(e for e in entries if e and not e.startswith("#"))
    if not entries:
        raise UserError(f"no clips listed in {path}")
    repeated = next((a for a, b in zip(entries, entries[1:]) if a == b), None)
    if repeated:
        raise UserError(f"{path}: {repeated} is listed twice")
    for entry in entries:
        check_source(entry)
    return entries, list(entries)


def make_runner(args, paths, variants, num_labels):
    """None for the single-process path, else the engine's runner (see label_clips)."""
    if args.runner == "local":
        return None
    return RayRunner(args.checkpoint, paths, variants, args.batch_size, num_labels,
                     args.ray_address, args.workers, args.threads or 1)


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    variants = tta_variants(args.tta_shift, args.tta_gain, args.tta_stretch)
    if args.runner == "ray":
        import_ray()  # before anything else: a missing engine fails at once
    if args.test_list:
        paths, fnames = read_test_list(args.test_list)
        folder_labels, test_source = None, args.test_list
    else:
        paths, folder_labels = list_test_clips(args.test_data)
        fnames = [os.path.relpath(p, args.test_data).replace(os.sep, "/") for p in paths]
        test_source = args.test_data
    configure_threads(args.threads)
    workers = args.threads or None
    keras_model, labels = load_model(args.checkpoint)
    predict = make_predictor(keras_model)
    if args.benchmark and args.benchmark_json:
        result = benchmark_runner(args, predict, paths, labels, workers)
        write_metrics(args.benchmark_json, result)
        print(json.dumps(result))
        return 0
    if args.benchmark:
        result = benchmark(predict, paths, args.batch_size, args.benchmark, workers)
        print(f"benchmark on {result['clips']} clips, threads {args.threads or 'all'}: "
              f"decode {result['decode_clips_per_s']:.0f} clips/s, model "
              f"{result['model_clips_per_s']:.0f} clips/s, both {result['total_clips_per_s']:.0f}"
              " clips/s")
        return 0

    outputs = output_paths(args.submission_fn)
    work_dir = args.submission_fn + ".parts"
    manifest = run_manifest(args.checkpoint, labels, test_source, fnames, paths, variants,
                            args.chunk_size)
    prepare_work_dir(work_dir, manifest, args.fresh)
    print(f"labelling {len(paths)} clips from {test_source} with {args.checkpoint} "
          f"({len(labels)} labels, TTA: {', '.join(v.name for v in variants)}, runner "
          f"{args.runner})", file=sys.stderr)
    remove_stale_temp_files(outputs)
    runner = make_runner(args, paths, variants, len(labels))
    try:
        probs, ok, labelled, seconds, errors = label_clips(
            predict, paths, len(labels), variants, args.batch_size, args.chunk_size, work_dir,
            workers, runner)
    finally:
        if runner is not None:
            runner.close()
    if not ok.any():
        raise UserError(f"none of the {len(paths)} clips in {test_source} is readable audio")
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
    metrics = {"checkpoint": args.checkpoint, "test_data": test_source, "clips": len(fnames),
               "runner": args.runner,
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
