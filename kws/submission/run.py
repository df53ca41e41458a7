"""make_submission's whole run: load the model, label the clips chunk by chunk (resumably, locally
or on Ray), write the submission and probability files, score them when the labels are known;
or time decoding and the model (--benchmark)."""

import json
import os
import sys
import tempfile
import time

import numpy as np

from kws import CLIP_SAMPLES
from kws.audio import read_many
from kws.common import UserError, write_metrics
from kws.labels import read_answers
from kws.probs import (
    output_paths,
    print_label_counts,
    write_probs_csv,
    write_probs_u8,
    write_submission,
)
from kws.submission.chunks import (
    label_clips,
    predict_chunk,
    prepare_work_dir,
    remove_stale_temp_files,
    remove_work_dir,
    run_manifest,
)
from kws.submission.predictor import configure_threads, load_model, make_predictor
from kws.submission.ray_runner import RayRunner
from kws.submission.report import (
    evaluate,
    fill_unreadable,
    recall_by_label,
    submission_from_probs,
    unreadable_warning,
)
from kws.submission.tta import Variant


def make_submission(args, variants, clips):
    """The command behind make_submission.py: args are its checked flags, variants the TTA
    variants, clips the kws.submission.inputs.Clips to label. Returns the exit code."""
    configure_threads(args.threads)
    workers = args.threads or None
    keras_model, labels = load_model(args.checkpoint)
    predict = make_predictor(keras_model)
    if args.benchmark:
        return print_benchmark(args, predict, clips.paths, labels, workers)
    outputs = output_paths(args.submission_fn)
    probs, ok, labelled, seconds, errors = label_all(args, predict, clips, labels, variants,
                                                     outputs)
    if not ok.any():
        raise UserError(f"none of the {len(clips.paths)} clips in {clips.source} is readable "
                        "audio")
    sub, unreadable = write_results(args, outputs, clips, labels, variants,
                                    fill_unreadable(probs, ok, labels), ok)
    if unreadable:
        print(unreadable_warning(unreadable, dict(zip(clips.fnames, clips.paths)), errors),
              file=sys.stderr)
    print_label_counts(sub)
    metrics = {"checkpoint": args.checkpoint, "test_data": clips.source,
               "clips": len(clips.fnames), "runner": args.runner,
               "unreadable": len(unreadable), "tta": [v.name for v in variants],
               "clips_per_second": labelled / seconds if labelled else None}
    scored = score(args, clips, sub, outputs, metrics)
    write_metrics(args.metrics_json, metrics)
    print(f"wrote {outputs['submission']}, {outputs['probs_csv']}, {outputs['probs_u8']} "
          f"(+ .json)" + (f", {outputs['confusion_png']}" if scored else ""))
    print_speed(labelled, seconds, variants)
    return 0


def label_all(args, predict, clips, labels, variants, outputs):
    """label_clips over every clip, resuming from SUB.csv.parts/ when the inputs match."""
    work_dir = args.submission_fn + ".parts"
    manifest = run_manifest(args.checkpoint, labels, clips.source, clips.fnames, clips.paths,
                            variants, args.chunk_size)
    prepare_work_dir(work_dir, manifest, args.fresh)
    print(f"labelling {len(clips.paths)} clips from {clips.source} with {args.checkpoint} "
          f"({len(labels)} labels, TTA: {', '.join(v.name for v in variants)}, runner "
          f"{args.runner})", file=sys.stderr)
    remove_stale_temp_files(outputs)
    runner = make_runner(args, clips.paths, variants, len(labels))
    try:
        return label_clips(predict, clips.paths, len(labels), variants, args.batch_size,
                           args.chunk_size, work_dir, args.threads or None, runner)
    finally:
        if runner is not None:
            runner.close()


def write_results(args, outputs, clips, labels, variants, probs, ok):
    """Write SUB.probs.csv, SUB.probs.u8 (+ .json) and SUB.csv, then drop the saved chunks;
    returns (submission labels, fnames of the unreadable clips)."""
    sub = submission_from_probs(probs, labels, ok, args.unknown_mode)
    unreadable = [f for f, good in zip(clips.fnames, ok) if not good]
    write_probs_csv(outputs["probs_csv"], clips.fnames, labels, probs)
    write_probs_u8(outputs["probs_u8"], outputs["probs_json"], clips.fnames, labels, probs,
                   {"unreadable": unreadable, "checkpoint": args.checkpoint,
                    "tta": [v.name for v in variants]})
    write_submission(outputs["submission"], clips.fnames, sub)
    remove_work_dir(args.submission_fn + ".parts")
    return sub, unreadable


def score(args, clips, sub, outputs, metrics):
    """Accuracy and recall into metrics when the true labels are known (--answers or labelled
    folders), with the confusion-matrix PNG; False when they are not."""
    truth = read_answers(args.answers) if args.answers else (
        dict(zip(clips.fnames, clips.folder_labels)) if clips.folder_labels else None)
    if truth is None:
        return False
    accuracy, confusion = evaluate(clips.fnames, sub, truth, outputs["confusion_png"],
                                   os.path.basename(args.checkpoint))
    metrics.update(accuracy=accuracy, scored_clips=int(confusion.sum()),
                   recall=recall_by_label(confusion))
    return True


def print_speed(labelled, seconds, variants):
    if labelled:
        print(f"speed: {labelled} clips in {seconds:.1f} s = {labelled / seconds:.0f} clips/s "
              f"(decode + model, {len(variants)} TTA variant(s))")
    else:
        print("speed: every chunk was resumed from an earlier run, nothing labelled now")


def print_benchmark(args, predict, paths, labels, workers):
    """--benchmark N: the whole --runner path to --benchmark_json, or decode and model alone."""
    if args.benchmark_json:
        result = benchmark_runner(args, predict, paths, labels, workers)
        write_metrics(args.benchmark_json, result)
        print(json.dumps(result))
        return 0
    result = benchmark(predict, paths, args.batch_size, args.benchmark, workers)
    print(f"benchmark on {result['clips']} clips, threads {args.threads or 'all'}: "
          f"decode {result['decode_clips_per_s']:.0f} clips/s, model "
          f"{result['model_clips_per_s']:.0f} clips/s, both {result['total_clips_per_s']:.0f}"
          " clips/s")
    return 0


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


def make_runner(args, paths, variants, num_labels):
    """None for the single-process path, else the engine's runner (see label_clips)."""
    if args.runner == "local":
        return None
    return RayRunner(args.checkpoint, paths, variants, args.batch_size, num_labels,
                     args.ray_address, args.workers, args.threads or 1)
