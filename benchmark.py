"""Compare models side by side: single-clip latency on one thread, peak memory, size, params, MACs.

    python benchmark.py --checkpoint checkpoints/edge/ep-030-vl-0.2.keras --pb tf_files/frozen.pb \
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
import subprocess
import sys
import tempfile
import time

import numpy as np

from kws.augment import Augmentation
from kws.common import UserError, atomic_write_text, machine_description, run_cli
from kws.data import AudioProcessor
from kws.folders import list_test_clips
from kws.pack_data import mix_with_pack, noise_images, pack_dataset, pack_examples

FORMATS = {".keras": "keras", ".pb": "pb", ".tflite": "tflite"}
COLUMNS = [  # (key, markdown header, format)
    ("name", "model", "{}"),
    ("format", "format", "{}"),
    ("size_bytes", "size (bytes)", "{:,}"),
    ("params", "params", "{:,}"),
    ("macs", "MACs", "{:,}"),
    ("latency_ms_median", "latency median (ms)", "{:.2f}"),
    ("latency_ms_p90", "p90 (ms)", "{:.2f}"),
    ("peak_rss_mb", "peak RSS (MB)", "{:.0f}"),
    ("model_rss_mb", "model RSS (MB)", "{:.1f}"),
    ("accuracy", "accuracy", "{:.4f}"),
]


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


# ---- the worker: one model in a fresh process ---------------------------------------------
def _memory_kb(field):
    """VmHWM / VmRSS of this process in kB (ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class _KerasModel:
    """A checkpoint loaded with load_checkpoint, called through one traced tf.function."""

    def __init__(self, path, threads):
        import tensorflow as tf

        from kws.checkpoint import load_checkpoint, model_stats

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)

        self.model, self.labels = load_checkpoint(path)
        self.stats = model_stats(self.model)
        self.fn = tf.function(lambda x: tf.nn.softmax(self.model(x, training=False)),
                              input_signature=[tf.TensorSpec([None, 16000], tf.float32)])

    def predict(self, samples):
        return self.fn(samples.reshape(1, -1)).numpy().reshape(-1)

    def predict_many(self, clips, batch_size=100):
        return np.concatenate([self.fn(clips[i:i + batch_size]).numpy()
                               for i in range(0, len(clips), batch_size)])


def _import_runtime(fmt, threads):
    """Import the runtime first, so the memory it takes counts apart from the model's."""
    if fmt == "tflite":
        import ai_edge_litert.interpreter  # noqa: F401
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if fmt == "keras":
        import kws.layers  # noqa: F401


def _is_int8(model):
    interpreter = getattr(model, "interpreter", None)
    return interpreter is not None and any(
        t["dtype"] == np.int8 for t in interpreter.get_tensor_details())


def measure(spec):
    """Latency, memory (and accuracy) of one model; run inside a fresh process."""
    from kws.labels import truth_label
    from kws.runtime import load_model

    fmt, threads = spec["format"], spec["threads"]
    _import_runtime(fmt, threads)
    rss_runtime = _memory_kb("VmRSS")
    if fmt == "keras":
        model = _KerasModel(spec["path"], threads)
        labels, stats = model.labels, model.stats
    else:
        model, labels = load_model(spec["path"], num_threads=threads)
        stats = {}
    clip = (np.random.RandomState(0).uniform(-0.1, 0.1, 16000)).astype(np.float32)
    for _ in range(spec["warmup"]):
        model.predict(clip)
    times = []
    for _ in range(spec["runs"]):
        t0 = time.perf_counter()
        model.predict(clip)
        times.append(time.perf_counter() - t0)
    peak = _memory_kb("VmHWM")
    times = np.asarray(times) * 1e3
    row = {"format": "tflite_int8" if _is_int8(model) else fmt,
           "latency_ms_median": float(np.median(times)),
           "latency_ms_p90": float(np.percentile(times, 90)),
           "latency_ms_mean": float(times.mean()), "runs": spec["runs"], "threads": threads,
           "peak_rss_mb": peak / 1024, "model_rss_mb": max(peak - rss_runtime, 0) / 1024,
           "params": stats.get("params"), "macs": stats.get("macs")}
    if spec.get("accuracy_npz"):
        with np.load(spec["accuracy_npz"]) as data:
            clips, folders = data["clips"], [str(f) for f in data["folders"]]
        if hasattr(model, "predict_many"):
            probs = model.predict_many(clips)
        else:
            probs = np.stack([model.predict(c) for c in clips])
        truth = [truth_label(f, labels) for f in folders]
        predicted = [labels[i] for i in probs.argmax(axis=1)]
        row["accuracy"] = float(np.mean([p == t for p, t in zip(predicted, truth)]))
        row["accuracy_clips"] = len(clips)
    return row


def worker_main(spec_json):
    row = measure(json.loads(spec_json))
    print("BENCHMARK_ROW " + json.dumps(row))
    return 0


# ---- the parent ---------------------------------------------------------------------------
def parse_spec(text, fmt=None):
    """`[NAME=]PATH` -> {name, path, format}."""
    name, sep, path = text.partition("=")
    if not sep or not name or os.path.exists(text):
        name, path = "", text
    if not os.path.isfile(path):
        raise UserError(f"model not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    fmt = fmt or FORMATS.get(ext)
    if fmt is None:
        raise UserError(f"{path}: unknown model format (expected {', '.join(FORMATS)})")
    if FORMATS.get(ext) not in (None, fmt):
        raise UserError(f"{path}: a {ext} file given as --{fmt}")
    if not name:
        parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
        name = f"{parent}/{os.path.basename(path)}" if fmt == "keras" else os.path.basename(path)
    return {"name": name, "path": path, "format": fmt}


def collect_specs(args):
    """--checkpoint, --pb, --tflite models (in that order), then the positional ones."""
    specs = [parse_spec(m, "keras") for m in args.checkpoint]
    specs += [parse_spec(m, "pb") for m in args.pb]
    specs += [parse_spec(m, "tflite") for m in args.tflite]
    specs += [parse_spec(m) for m in args.models]
    if not specs:
        raise UserError("no model given (positional PATH, --checkpoint, --pb or --tflite)")
    return specs


def frozen_info(path):
    """The NAME_info.json freeze_graph.py wrote beside NAME.pb / NAME(_int8).tflite, or {}."""
    stem = os.path.splitext(path)[0]
    stem = stem[:-len("_int8")] if stem.endswith("_int8") else stem
    try:
        with open(stem + "_info.json", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def prepare_accuracy_data(folder, out_path):
    """Decode a <label>/*.wav folder once into an .npz the workers read."""
    from kws.audio import read_many

    paths, folders = list_test_clips(folder)
    if folders is None:
        raise UserError(f"--accuracy_data needs <label>/*.wav folders, {folder} is flat")
    clips, kept = read_many(paths)
    if len(kept) == 0:
        raise UserError(f"no readable clips in {folder}")
    np.savez(out_path, clips=clips, folders=np.asarray([folders[i] for i in kept]))
    return len(kept)


def run_worker(spec, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=os.path.dirname(os.path.abspath(__file__)))
    except subprocess.TimeoutExpired:
        raise UserError(f"{spec['name']}: no result within {timeout:.0f} s") from None
    for line in proc.stdout.splitlines():
        if line.startswith("BENCHMARK_ROW "):
            return json.loads(line[len("BENCHMARK_ROW "):])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    reason = errors[-1][len("error:"):].strip() if errors else (lines[-1] if lines else
                                                                f"exit code {proc.returncode}")
    raise UserError(f"{spec['name']}: {reason}")


def cell(row, key, fmt):
    value = row.get(key)
    return "-" if value is None else fmt.format(value)


def table(rows, markdown=False):
    headers = [h for _, h, _ in COLUMNS]
    cells = [[cell(r, k, f) for k, _, f in COLUMNS] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    fmt_line = lambda items: "  ".join(  # noqa: E731
        s.ljust(w) if i < 2 else s.rjust(w) for i, (s, w) in enumerate(zip(items, widths)))
    return "\n".join([fmt_line(headers)] + [fmt_line(c) for c in cells])


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.pipeline:
        figures = pipeline_benchmark(args.pipeline, args.pipeline_steps, pack=args.pipeline_pack,
                                     rounds=args.pipeline_rounds)
        if args.json:
            atomic_write_text(args.json, json.dumps(figures, indent=1) + "\n")
        return 0
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        raise UserError("need --runs >= 1, --warmup >= 0 and --threads >= 1")
    specs = collect_specs(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp:
        npz = ""
        if args.accuracy_data:
            npz = os.path.join(tmp, "accuracy.npz")
            count = prepare_accuracy_data(args.accuracy_data, npz)
            print(f"accuracy on {count} clips of {args.accuracy_data}", file=sys.stderr)
        for spec in specs:
            print(f"measuring {spec['name']} ...", file=sys.stderr)
            job = dict(spec, runs=args.runs, warmup=args.warmup, threads=args.threads,
                       accuracy_npz=npz)
            row = dict(spec, size_bytes=os.path.getsize(spec["path"]),
                       **run_worker(job, args.timeout))
            if row["format"] != "keras":
                info = frozen_info(spec["path"])
                row["params"], row["macs"] = info.get("params"), info.get("macs")
            row.setdefault("accuracy", None)
            rows.append(row)
    note = (f"{machine_description()}; {args.threads} thread(s), batch 1, median of "
            f"{args.runs} runs after {args.warmup} warm-up runs")
    print(table(rows))
    print(note)
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, table(rows, markdown=True) + f"\n\n{note}\n")
    return 0


def pipeline_benchmark(data_dir, steps, batch_size=64, pack="", rounds=5):
    """Does augmentation keep up with training? Times, in one process: the train step of a
    ~200k-parameter model on cached batches against the same step fed live, for two
    augmentation sets (and the pack recipe's mix, with `pack`), and the pipeline alone. The
    figures, as a dict for --json."""
    import time

    import tensorflow as tf

    from kws.zoo import build_model

    if steps < 1 or rounds < 1:
        raise UserError("--pipeline_steps and --pipeline_rounds must be >= 1")
    processor = AudioProcessor.from_settings({"data_dir": data_dir, "silence_percentage": 10,
                                              "unknown_percentage": 60})
    net = build_model("edge_tcs", len(processor.words_list), width=1.9, spec_augment=True)
    net.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def per_batch(run, repeats=2):
        """Seconds per batch, the best of `repeats` timings (a timing can catch a retrace)."""
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = min(best, (time.perf_counter() - start) / steps)
        return best

    compiled = {}

    def blocked(model, dataset):
        """The share of a step spent blocked on the next batch, timed around each step."""
        if id(model) not in compiled:
            compiled[id(model)] = tf.function(model.train_step, jit_compile=model.jit_compile)
        train_step = compiled[id(model)]
        batches = iter(dataset)
        train_step(next(batches))
        waiting = total = 0.0
        for _ in range(steps):
            start = time.perf_counter()
            batch = next(batches)
            got = time.perf_counter()
            float(train_step(batch)["loss"])
            waiting, total = waiting + got - start, total + time.perf_counter() - start
        return waiting / total

    def alternate(model, cached, live):
        """The input wait, two ways, medians of `rounds` rounds of the cached and the live step
        alternating (a shared machine's speed drifts between two timings minutes apart):
        `input_wait`, the share of a step blocked on the next batch (as TF's profiler counts
        it), over a cached batch's; and `input_cost`, the live step's time over the cached
        step's, which counts the pipeline's CPU taken from the step's threads too."""
        timed = []
        for _ in range(rounds):
            step = per_batch(lambda: model.fit(cached, steps_per_epoch=steps, epochs=1,
                                               verbose=0))
            fed = per_batch(lambda: model.fit(live, steps_per_epoch=steps, epochs=1,
                                              verbose=0))
            wait = max(blocked(model, live) - blocked(model, cached), 0.0)
            timed.append((step, fed, max(fed - step, 0) / fed, wait))
        step, fed, cost, wait = (float(np.median(column)) for column in zip(*timed))
        return {"step_cached_ms": step * 1e3, "step_live_ms": fed * 1e3,
                "examples_per_second_live": batch_size / fed, "input_wait": wait,
                "input_wait_rounds": [t[3] for t in timed], "input_cost": cost,
                "input_cost_rounds": [t[2] for t in timed]}

    cached = processor.dataset("training", batch_size).take(1).cache().repeat()
    net.fit(cached, steps_per_epoch=5, epochs=1, verbose=0)
    figures = {"machine": machine_description(), "batch_size": batch_size, "steps": steps,
               "rounds": rounds, "audio": {}}
    print(f"{figures['machine']}; batch {batch_size}, {steps} batches per phase, {rounds} "
          f"rounds; edge_tcs width 1.9 ({net.count_params():,} parameters, SpecAugment in "
          "the model)")
    settings = {"noise + gain + shift (the entry's)": Augmentation(foreground_frequency=0.5),
                "... + speed on half the clips": Augmentation(foreground_frequency=0.5,
                                                              speed_frequency=0.5)}
    for name, augmentation in settings.items():
        live = processor.dataset("training", batch_size, augmentation)
        net.fit(live, steps_per_epoch=5, epochs=1, verbose=0)  # warm up (and trace) first
        alone = per_batch(lambda live=live: [None for _ in live.take(steps)])
        result = {"pipeline_alone_ms": alone * 1e3, **alternate(net, cached, live)}
        figures["audio"][name] = result
        print(f"{name}: pipeline alone {alone * 1e3:.1f} ms/batch ({batch_size / alone:,.0f} "
              f"clips/s); train step on a cached batch {result['step_cached_ms']:.1f} ms, fed "
              f"live {result['step_live_ms']:.1f} ms; " + wait_text(result))
    if pack:
        figures["pack"] = pack_pipeline_benchmark(processor, pack, steps, batch_size, per_batch,
                                                  alternate)
    return figures


def wait_text(result):
    def rounds(key):
        return ", ".join(f"{w:.1%}" for w in result[f"{key}_rounds"])

    return (f"input wait {result['input_wait']:.1%} of a step (blocked on the next batch; "
            f"rounds {rounds('input_wait')}), input cost {result['input_cost']:.1%} (the live "
            f"step over the cached one; rounds {rounds('input_cost')})")


def pack_pipeline_benchmark(processor, pack_path, steps, batch_size, per_batch, alternate):
    """The pack recipe's input: audio clips mixed half and half with augmented pack images,
    against the train step of pack_trainer (the audio's front end runs in the step)."""
    import tensorflow as tf

    from kws.layers import PackFeatures, front_end_layer, pack_trainer
    from kws.pack import read_pack
    from kws.zoo import build_model

    rss_before = _memory_kb("VmRSS")
    pack = read_pack(pack_path, "data/pack")
    net = build_model("edge_tcs", len(processor.words_list), width=2.0, spec_augment=True,
                          features="pack", time_pool=2)
    front = front_end_layer(net, PackFeatures)
    body = pack_trainer(net)
    body.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    audio = processor.dataset("training", batch_size, Augmentation(foreground_frequency=0.5,
                                                                   speed_frequency=0.5))
    mixed, _, report = mix_with_pack(processor, audio, audio, front, pack, 0.5, batch_size, 0)
    cached = mixed.take(16).cache().repeat()  # audio and pack batches, as the live mix has them
    body.fit(cached, steps_per_epoch=16, epochs=1, verbose=0)
    body.fit(mixed, steps_per_epoch=5, epochs=1, verbose=0)
    result = alternate(body, cached, mixed)
    alone = per_batch(lambda: [None for _ in mixed.take(steps)])
    branches = {name: per_batch(lambda ds=ds: [None for _ in ds.take(steps)]) * 1e3
                for name, ds in (
                    ("audio clips", audio),
                    ("pack images", pack_dataset(*pack_examples(pack, processor.words_list),
                                                 batch_size, 0,
                                                 noise_images(processor.noise_train, front))))}
    rss = _memory_kb("VmRSS")
    result.update({"images": report["images"], "pipeline_alone_ms": alone * 1e3,
                   "branches_alone_ms": branches, "resident_mb": rss / 1024,
                   "pack_added_mb": (rss - rss_before) / 1024,
                   "peak_mb": _memory_kb("VmHWM") / 1024})
    print(f"pack (edge_tcs width 2 on PackFeatures, {report['images']:,} images, half the "
          f"batches, the audio's front end in the step): train step on a cached batch "
          f"{result['step_cached_ms']:.1f} ms; pipeline alone "
          f"{alone * 1e3:.1f} ms/batch ({batch_size / alone:,.0f} examples/s: "
          + ", ".join(f"{name} {t:.1f} ms" for name, t in branches.items())
          + f"); step fed live {result['step_live_ms']:.1f} ms "
          f"({result['examples_per_second_live']:,.0f} examples/s); " + wait_text(result)
          + f"; resident memory {result['resident_mb']:,.0f} MB (the pack and its pipeline "
          f"added {result['pack_added_mb']:,.0f} MB), peak {result['peak_mb']:,.0f} MB")
    return result


if __name__ == "__main__":
    run_cli(main)
