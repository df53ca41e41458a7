"""Compare models side by side: single-clip latency on one thread, peak memory, size, params, MACs.

    python benchmark.py --checkpoint checkpoints/demo/last.keras --pb tf_files/frozen.pb \
        --tflite tf_files/frozen.tflite --tflite tf_files/frozen_int8.tflite --markdown bench.md

Each model runs in a fresh subprocess (so its memory is its own): the runtime is limited to one
thread (TF intra/inter-op 1, LiteRT num_threads=1), the model is fed one clip [1, 16000] --warmup
times and then timed over --runs calls; the latency is the median (and p90) of those calls. Memory
is the process's peak resident set (VmHWM) and its growth from loading and running the model
after the runtime was imported. Params and MACs come from model_stats for a checkpoint and
from the NAME_info.json that freeze_graph.py writes beside a .pb/.tflite. With --accuracy_data
(a <label>/*.wav folder) each model also labels every clip there for an accuracy column.
Models are given as --checkpoint/--pb/--tflite PATH or as positional [NAME=]PATH (format from the
extension). Prints a table; --json and --markdown write it to files.
"""

import argparse
import json
import os

from kws.bench import benchmark_models, collect_specs, measure, table
from kws.common import UserError, atomic_write_text, machine_description, run_cli


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="*", help="[NAME=]PATH of a .keras, .pb or .tflite model")
    p.add_argument("--checkpoint", action="append", default=[], help="[NAME=]PATH.keras")
    p.add_argument("--pb", action="append", default=[], help="[NAME=]PATH.pb (freeze_graph.py)")
    p.add_argument("--tflite", action="append", default=[], help="[NAME=]PATH.tflite")
    p.add_argument("--runs", type=int, default=200, help="timed single-clip calls per model")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls before timing")
    p.add_argument("--threads", type=int, default=1, help="runtime threads")
    p.add_argument("--accuracy_data", default="",
                   help="a <label>/*.wav folder: add each model's accuracy on it")
    p.add_argument("--json", "--metrics_json", dest="json", default="",
                   help="write the rows as a JSON list here")
    p.add_argument("--markdown", default="", help="write the table as markdown here")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per model")
    p.add_argument("--pipeline", default="", metavar="DATA_DIR",
                   help="instead: time the training input pipeline against the train step of "
                        "a ~200k-parameter model on this data")
    p.add_argument("--pipeline_steps", type=int, default=60, help="batches timed per phase")
    p.add_argument("--pipeline_rounds", type=int, default=5,
                   help="rounds of cached and live steps, alternating; medians are reported")
    p.add_argument("--pipeline_pack", default="", metavar="ZIP",
                   help="with --pipeline: also time the pack model's body fed by audio features "
                        "mixed with this spectrogram pack (train.py --pack), and its memory")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure one model
    return p


def write_table(args, rows):
    note = (f"{machine_description()}; {args.threads} thread(s), batch 1, median of "
            f"{args.runs} runs after {args.warmup} warm-up runs")
    print(table(rows))
    print(note)
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, table(rows, markdown=True) + f"\n\n{note}\n")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.worker:  # one model, in the fresh process benchmark_models started
        print("BENCHMARK_ROW " + json.dumps(measure(json.loads(args.worker))))
        return 0
    if args.pipeline:
        if args.pipeline_steps < 1 or args.pipeline_rounds < 1:
            raise UserError("--pipeline_steps and --pipeline_rounds must be >= 1")
        # TensorFlow: after the flags are checked
        from kws.pipeline_bench import pipeline_benchmark

        figures = pipeline_benchmark(args.pipeline, args.pipeline_steps, pack=args.pipeline_pack,
                                     rounds=args.pipeline_rounds)
        if args.json:
            atomic_write_text(args.json, json.dumps(figures, indent=1) + "\n")
        return 0
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        raise UserError("need --runs >= 1, --warmup >= 0 and --threads >= 1")
    rows = benchmark_models(collect_specs(args), args.runs, args.warmup, args.threads,
                            args.timeout, os.path.abspath(__file__), args.accuracy_data)
    write_table(args, rows)
    return 0


if __name__ == "__main__":
    run_cli(main)
