"""Run the Pi bundle on ARM64 Linux under emulation and check it labels as on x86 (make arm-check).

    python arm_check.py                                   # bundle the shipped model and check it
    python arm_check.py --bundle dist/kws-pi-0.1.0.tar.gz --clips ../shared/data/some_folder

Unpacks the bundle into an empty folder, then runs its Pi script on a folder of clips and its
label_stream.py on a stream piped to `--raw -` (as arecord would), twice: on x86 in a virtual env
of exactly the bundle's requirements-pi.txt, and on ARM64 (Debian bookworm's arm64 python3.11
under qemu-aarch64-static on a Cortex-A53, with the pinned aarch64 wheels). Passes when every
clip's label and every detection equal the x86 run's and every probability (clips and every
stream hop) agrees within one int8 output step (1/256); a label that differs only where x86's
top two scores tie within that step is reported, not failed. No root-only step: Debian packages
and wheels are fetched into ~/.cache/kws-arm (a second run needs no network); see
kws/armcheck.py. `--time_model NAME=M.tflite` also times other models on the same clips on both
machines, for ratios (emulated times are not a Pi's). Exit 1 when the check fails.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from kws.armcheck import (
    CACHE,
    QEMU_CPU,
    aarch64_site,
    arm_python,
    clean_env,
    compare_detections,
    compare_probabilities,
    debian_arm64,
    read_detections,
    read_envelope,
    read_table,
    run_measured,
    stream_from_clips,
    synthetic_clips,
)
from kws.common import UserError, require_dir, run_cli, write_metrics
from kws.folders import list_test_clips
from kws.pibundle import REPO, REQUIREMENTS, build_bundle, pinned_venv, unpack
from kws.shipped import DEFAULT_MODEL

STREAM_CLIPS = 8  # clips strung into the stream (12 s: ~30 s emulated)
# Low, so that generated clips fire detections too: the check compares them, not their accuracy
STREAM_THRESHOLD = 0.5


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="",
                   help="a kws-pi-*.tar.gz (default: build one of --model)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the model to bundle without --bundle")
    p.add_argument("--clips", default="",
                   help="folder of 16 kHz clips (default: --num_clips generated ones)")
    p.add_argument("--num_clips", type=int, default=24,
                   help="generated clips, or at most this many of --clips")
    p.add_argument("--time_model", action="append", default=[], metavar="NAME=M.tflite",
                   help="also time this model on the clips on both machines (repeatable)")
    p.add_argument("--cache", default=CACHE, help="where downloads and the userland are kept")
    p.add_argument("--work_dir", default="", help="keep the runs' files here (default: temp)")
    p.add_argument("--metrics_json", default="", help="also write the results as JSON")
    return p


class Machine:
    """One side of the check: a python command that runs the unpacked bundle."""

    def __init__(self, name, command, env, bundle):
        self.name, self.command, self.env, self.bundle = name, command, env, bundle
        self.peak_rss_mib = 0.0

    def run(self, script, args, out_dir, stdin_path=None):
        os.makedirs(out_dir, exist_ok=True)
        rc, out, err, seconds, rss = run_measured(
            [*self.command, script, *args], self.env, self.bundle, out_dir, stdin_path)
        self.peak_rss_mib = max(self.peak_rss_mib, rss)
        if rc:
            last = (err.strip() or out.strip() or "?").splitlines()[-1]
            raise UserError(f"{script} on {self.name} exited {rc}: {last}")
        return seconds, rss

    def label_clips(self, model, clips, out_dir, labels=None):
        metrics = os.path.join(out_dir, "metrics.json")
        seconds, rss = self.run("make_submission_on_rpi.py", [
            "--model", model, "--test_data", clips,
            "--submission_fn", os.path.join(out_dir, "labels.csv"),
            "--probs_csv", os.path.join(out_dir, "probs.csv"), "--metrics_json", metrics,
            *(["--labels", labels] if labels else [])], out_dir)
        with open(metrics) as f:
            figures = json.load(f)
        return {**figures, "wall_seconds": seconds, "peak_rss_mib": rss}

    def label_stream(self, model, raw, out_dir):
        seconds, rss = self.run("label_stream.py", [
            "--model", model, "--raw", "-", "--quiet",
            "--detection_threshold", str(STREAM_THRESHOLD),
            "--csv", os.path.join(out_dir, "detections.csv"),
            "--scores_csv", os.path.join(out_dir, "scores.csv")], out_dir, stdin_path=raw)
        return {"wall_seconds": seconds, "peak_rss_mib": rss}


def clip_folder(args, work):
    if not args.clips:
        folder = os.path.join(work, "clips")
        synthetic_clips(folder, args.num_clips)
        return folder, sorted(os.path.join(folder, n) for n in os.listdir(folder))
    paths, _ = list_test_clips(require_dir(args.clips, "clips folder"))
    step = max(1, len(paths) // args.num_clips)
    chosen = paths[::step][:args.num_clips]
    folder = os.path.join(work, "clips")
    for p in chosen:  # flat copies, so both machines label the same chosen few
        rel = os.path.relpath(p, args.clips).replace(os.sep, "__")
        os.makedirs(folder, exist_ok=True)
        shutil.copyfile(p, os.path.join(folder, rel))
    return folder, sorted(os.path.join(folder, n) for n in os.listdir(folder))


def parse_time_models(specs):
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not os.path.isfile(path):
            raise UserError(f"--time_model takes NAME=M.tflite of an existing file, got {spec}")
        models[name] = os.path.abspath(path)
    return models


def check(args, work):
    timed = parse_time_models(args.time_model)
    archive = args.bundle or build_bundle([args.model], os.path.join(work, "dist"))
    bundle = unpack(archive, os.path.join(work, "unpacked"))
    with open(os.path.join(bundle, "bundle.json")) as f:
        model = json.load(f)["models"][0]
    clips, paths = clip_folder(args, work)
    raw = os.path.join(work, "stream.s16le")
    stream_seconds = stream_from_clips(paths[:STREAM_CLIPS], raw)
    requirements = os.path.join(bundle, REQUIREMENTS)

    print("x86: the bundle's requirements in a venv (cached after the first run)",
          file=sys.stderr)
    x86 = Machine("x86-64", [pinned_venv(requirements)], clean_env(), bundle)
    print("ARM64: Debian arm64 userland, qemu, aarch64 wheels (cached after the first run)",
          file=sys.stderr)
    arm_command, arm_env = arm_python(debian_arm64(args.cache), aarch64_site(args.cache,
                                                                             requirements))
    arm = Machine(f"ARM64 (qemu {QEMU_CPU})", arm_command, arm_env, bundle)
    results = {"bundle": os.path.basename(archive), "model": model, "clips": len(paths),
               "clip_source": args.clips or "generated", "stream_seconds": stream_seconds,
               "qemu_cpu": QEMU_CPU}
    runs = {}
    for machine, tag in ((x86, "x86"), (arm, "arm")):
        print(f"{machine.name}: the Pi script on {len(paths)} clips, label_stream.py on "
              f"{stream_seconds:.0f} s", file=sys.stderr)
        runs[tag] = {"clips": machine.label_clips(model, clips, os.path.join(work, tag, "clips")),
                     "stream": machine.label_stream(model, raw, os.path.join(work, tag, "stream"))}
    x86_probs, labels = read_table(os.path.join(work, "x86", "clips", "probs.csv"), "fname")
    arm_probs, _ = read_table(os.path.join(work, "arm", "clips", "probs.csv"), "fname")
    x86_hops, _ = read_table(os.path.join(work, "x86", "stream", "scores.csv"), "time_ms")
    arm_hops, _ = read_table(os.path.join(work, "arm", "stream", "scores.csv"), "time_ms")
    envelope = x86_envelope(x86, model, clips, work)
    results["compare"] = {
        "clips": compare_probabilities(x86_probs, arm_probs, labels, envelope),
        "stream_hops": compare_probabilities(x86_hops, arm_hops, labels),
        "detections": compare_detections(
            read_detections(os.path.join(work, "x86", "stream", "detections.csv")),
            read_detections(os.path.join(work, "arm", "stream", "detections.csv")))}
    results["runs"] = runs
    results["timed"] = time_models(timed, {"x86": x86, "arm": arm}, clips, model, work)
    results["ok"] = all(c["ok"] for c in results["compare"].values())
    return results


def x86_envelope(x86, model, clips, work):
    """kws.armcheck.rounding_envelope of the bundled model on x86, in the bundle's venv."""
    out = os.path.join(work, "x86", "envelope.csv")
    code = ("import sys; from kws.armcheck import write_envelope; "
            "write_envelope(sys.argv[1], sys.argv[2], sys.argv[3])")
    env = clean_env(PYTHONPATH=REPO)
    done = subprocess.run([*x86.command, "-c", code, os.path.join(x86.bundle, model), clips,
                           out], env=env, cwd=work, capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"the x86 rounding envelope failed: "
                        f"{(done.stderr.strip() or '?').splitlines()[-1]}")
    return read_envelope(out)


def time_models(timed, machines, clips, bundled, work):
    """Per-clip median latency of each model on each machine, and its ratio to the bundled
    model's on the same machine."""
    if not timed:
        return {}
    table = {}
    for name, path in {"bundled": bundled, **timed}.items():
        for tag, machine in machines.items():
            figures = machine.label_clips(path, clips, os.path.join(work, tag, "timed", name))
            table.setdefault(name, {})[tag] = {"latency_ms_median": figures["latency_ms_median"],
                                               "peak_rss_mib": figures["peak_rss_mib"]}
    for name in table:
        for tag in machines:
            table[name][tag]["ratio_to_bundled"] = (table[name][tag]["latency_ms_median"]
                                                    / table["bundled"][tag]["latency_ms_median"])
    return table


def report(results):
    c = results["compare"]
    for what in ("clips", "stream_hops"):
        r = c[what]
        if "rows" not in r:
            print(f"{what}: {r['reason']}")
            continue
        print(f"{what}: {r['rows']} rows, {r['rows_within_tolerance']} within one int8 step "
              f"({r['tolerance']:.6f}), largest difference {r['max_abs_difference']:.6f}; "
              f"{len(r['rows_beyond_envelope'])} beyond x86's rounding envelope; "
              f"{len(r['label_differences'])} label differences "
              f"({len(r['label_differences_beyond_envelope'])} beyond the envelope)")
    d = c["detections"]
    print(f"detections: {d['x86']} on x86, {d['arm']} on ARM64"
          + ("" if d["ok"] else f", first difference {d['first_difference']}"))
    for tag, run in results["runs"].items():
        print(f"{tag}: Pi script {run['clips']['wall_seconds']:.1f} s "
              f"(median {run['clips']['latency_ms_median']:.2f} ms a clip), stream "
              f"{run['stream']['wall_seconds']:.1f} s, peak RSS "
              f"{max(run['clips']['peak_rss_mib'], run['stream']['peak_rss_mib']):.0f} MiB")
    for name, row in results["timed"].items():
        print(f"timed {name}: " + ", ".join(
            f"{tag} {v['latency_ms_median']:.2f} ms ({v['ratio_to_bundled']:.2f}x bundled)"
            for tag, v in row.items()))
    print("ARM64 check " + ("passed" if results["ok"] else "FAILED") + ": labels and "
          "probabilities " + ("agree" if results["ok"] else "differ") + " with x86")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.num_clips < 1:
        raise UserError(f"--num_clips must be >= 1, got {args.num_clips}")
    if args.clips:
        require_dir(args.clips, "clips folder")
    parse_time_models(args.time_model)
    if args.work_dir:
        os.makedirs(args.work_dir, exist_ok=True)
        results = check(args, os.path.abspath(args.work_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="kws-arm-") as work:
            results = check(args, work)
    report(results)
    write_metrics(args.metrics_json, json.loads(json.dumps(results, default=to_json)))
    return 0 if results["ok"] else 1


def to_json(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))


if __name__ == "__main__":
    run_cli(main)
