"""Resumable chunked labelling: clips go through in chunks, each decoded in threads while the
model labels the previous one, and saved in a work folder so a killed run continues."""

import glob
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from kws.audio import local_path, read_many
from kws.common import UserError, atomic_path, atomic_write_text, remove_partial_files

MANIFEST_VERSION = 2


def predict_chunk(predict, clips, variants, batch_size):
    """Mean probability over the variants, computed in batches of batch_size."""
    out = []
    for start in range(0, len(clips), batch_size):
        batch = clips[start:start + batch_size]
        out.append(sum(predict(variant(batch)) for variant in variants) / len(variants))
    return np.concatenate(out).astype(np.float32)


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
        # every one-second WAV has the same size: a clip rewritten in place changes its mtime
        stat = os.stat(local) if local and os.path.isfile(local) else None
        identity = f"{stat.st_size}\0{stat.st_mtime_ns}" if stat else "-1"
        clips.update(f"{fname}\0{identity}\n".encode())
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


def split_chunks(n, chunk_size):
    """(chunk index, start, end) of every chunk of n clips."""
    return [(c, s, min(s + chunk_size, n)) for c, s in enumerate(range(0, n, chunk_size))]


def load_saved_chunks(work_dir, chunks, probs, ok):
    """Fill probs/ok from the chunks saved in work_dir; returns the chunks still to label."""
    todo = []
    for c, start, end in chunks:
        part = load_part(work_dir, c, end - start, probs.shape[1])
        if part is None:
            todo.append((c, start, end))
        else:
            probs[start:end], ok[start:end] = part
    return todo


def label_clips(predict, paths, num_labels, variants, batch_size, chunk_size, work_dir,
                workers=None, runner=None):
    """Probabilities [n, k] float32 and readable mask [n] for all paths, chunk by chunk.

    Chunks already in work_dir are loaded, not recomputed; the others go to the runner
    (default: local_chunks, in this process; runner(todo) for another engine, see
    kws.submission.ray_runner.RayRunner), which yields them in any order; each is saved as it
    comes. Returns (probs, ok, clips labelled now, seconds spent on them, the errors of the
    clips decoded now, in path order).
    """
    n = len(paths)
    probs = np.zeros((n, num_labels), np.float32)
    ok = np.zeros(n, bool)
    todo = load_saved_chunks(work_dir, split_chunks(n, chunk_size), probs, ok)
    done_before = n - sum(end - start for _, start, end in todo)
    if done_before:
        print(f"resuming: {done_before} of {n} clips already labelled in {work_dir}",
              file=sys.stderr)
    began = time.perf_counter()
    labelled = runner(todo) if runner is not None else local_chunks(
        predict, paths, todo, num_labels, variants, batch_size, workers)
    errors = save_chunks(labelled, todo, work_dir, probs, ok, done_before)
    in_order = [e for c in sorted(errors) for e in errors[c]]
    return probs, ok, n - done_before, time.perf_counter() - began, in_order


def save_chunks(labelled, todo, work_dir, probs, ok, done_before):
    """Save each (chunk, probs, ok, errors) the runner yields and fill probs/ok with it;
    returns {chunk: errors}. Every chunk of todo must come back."""
    errors = {}
    bounds = {c: (start, end) for c, start, end in todo}
    with tqdm(total=len(probs), initial=done_before, unit="clip", desc="label",
              mininterval=1.0) as bar:
        for c, chunk_probs, chunk_ok, chunk_errors in labelled:
            start, end = bounds.pop(c)
            save_part(work_dir, c, chunk_probs, chunk_ok)
            probs[start:end], ok[start:end] = chunk_probs, chunk_ok
            errors[c] = chunk_errors
            bar.update(end - start)
    if bounds:
        raise UserError(f"the runner returned {len(todo) - len(bounds)} of {len(todo)} chunks")
    return errors


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
