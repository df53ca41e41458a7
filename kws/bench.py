"""Compare models side by side (what benchmark.py runs): each model measured in a fresh
process, one clip at a time on one thread, for latency, peak memory, size, params, MACs and
accuracy; and the table of the rows.

    rows = benchmark_models([parse_spec("m.tflite")], runs=200, warmup=20, threads=1,
                            timeout=1800, script="benchmark.py")
    print(table(rows))

Light: the worker imports its model's runtime (LiteRT or TensorFlow) only when it measures, so
the runtime's memory counts apart from the model's and a .tflite worker never loads TensorFlow.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from kws.common import UserError
from kws.folders import list_test_clips
from kws.labels import truth_label
from kws.runtime import load_model

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



def memory_kb(field):
    """VmHWM / VmRSS of this process in kB (ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class TimedKerasModel:
    """A checkpoint loaded with load_checkpoint, called through one traced tf.function."""

    def __init__(self, path, threads):
        # Imported here, after the worker measured its resident memory without them: a .tflite
        # worker must not load TensorFlow, and the runtime's memory counts apart from the model's.
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
    """Import the runtime first, so the memory it takes counts apart from the model's (which is
    why these imports are here and not at the top: each worker imports only its own runtime)."""
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


def time_calls(model, warmup, runs):
    """Milliseconds of each of `runs` single-clip calls, after `warmup` untimed ones."""
    clip = (np.random.RandomState(0).uniform(-0.1, 0.1, 16000)).astype(np.float32)
    for _ in range(warmup):
        model.predict(clip)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict(clip)
        times.append(time.perf_counter() - t0)
    return np.asarray(times) * 1e3


def measure(spec):
    """Latency, memory (and accuracy) of one model; run inside a fresh process."""
    fmt, threads = spec["format"], spec["threads"]
    _import_runtime(fmt, threads)
    rss_runtime = memory_kb("VmRSS")
    if fmt == "keras":
        model = TimedKerasModel(spec["path"], threads)
        labels, stats = model.labels, model.stats
    else:
        model, labels = load_model(spec["path"], num_threads=threads)
        stats = {}
    times = time_calls(model, spec["warmup"], spec["runs"])
    peak = memory_kb("VmHWM")
    row = {"format": "tflite_int8" if _is_int8(model) else fmt,
           "latency_ms_median": float(np.median(times)),
           "latency_ms_p90": float(np.percentile(times, 90)),
           "latency_ms_mean": float(times.mean()), "runs": spec["runs"], "threads": threads,
           "peak_rss_mb": peak / 1024, "model_rss_mb": max(peak - rss_runtime, 0) / 1024,
           "params": stats.get("params"), "macs": stats.get("macs")}
    if spec.get("accuracy_npz"):
        row.update(accuracy(model, labels, spec["accuracy_npz"]))
    return row


def accuracy(model, labels, npz):
    """{accuracy, accuracy_clips} of a model on the clips prepare_accuracy_data decoded."""
    with np.load(npz) as data:
        clips, folders = data["clips"], [str(f) for f in data["folders"]]
    if hasattr(model, "predict_many"):
        probs = model.predict_many(clips)
    else:
        probs = np.stack([model.predict(c) for c in clips])
    truth = [truth_label(f, labels) for f in folders]
    predicted = [labels[i] for i in probs.argmax(axis=1)]
    return {"accuracy": float(np.mean([p == t for p, t in zip(predicted, truth)])),
            "accuracy_clips": len(clips)}


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
    paths, folders = list_test_clips(folder)
    if folders is None:
        raise UserError(f"--accuracy_data needs <label>/*.wav folders, {folder} is flat")
    from kws.audio import read_many  # soundfile: kept out of the measuring workers

    clips, kept = read_many(paths)
    if len(kept) == 0:
        raise UserError(f"no readable clips in {folder}")
    np.savez(out_path, clips=clips, folders=np.asarray([folders[i] for i in kept]))
    return len(kept)


def run_worker(spec, timeout, script):
    """One model's row, measured by `script --worker SPEC` in a fresh process (the benchmark
    script's own worker mode, which calls measure)."""
    cmd = [sys.executable, script, "--worker", json.dumps(spec)]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=os.path.dirname(script))
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


def benchmark_models(specs, runs, warmup, threads, timeout, script, accuracy_data=""):
    """A row of figures per model spec, each measured in a fresh process by run_worker."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp:
        npz = ""
        if accuracy_data:
            npz = os.path.join(tmp, "accuracy.npz")
            count = prepare_accuracy_data(accuracy_data, npz)
            print(f"accuracy on {count} clips of {accuracy_data}", file=sys.stderr)
        for spec in specs:
            print(f"measuring {spec['name']} ...", file=sys.stderr)
            job = dict(spec, runs=runs, warmup=warmup, threads=threads, accuracy_npz=npz)
            row = dict(spec, size_bytes=os.path.getsize(spec["path"]),
                       **run_worker(job, timeout, script))
            if row["format"] != "keras":
                info = frozen_info(spec["path"])
                row["params"], row["macs"] = info.get("params"), info.get("macs")
            row.setdefault("accuracy", None)
            rows.append(row)
    return rows
