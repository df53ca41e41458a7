"""The ARM check's run (what arm_check.py runs): the Pi bundle on x86 in a venv of its pins and
on ARM under qemu, each labelling the same clips and the same stream, and the comparison of their
probabilities and detections. The building blocks (userland, wheels, envelopes, comparisons) are
kws/armcheck.py's.

    results = check(build_parser().parse_args([]), work="/tmp/arm")  # arm_check.py's flags
    print(results["ok"])
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from kws.armcheck import (
    ARCHES,
    TYPICAL_QUANTILE,
    arm_python,
    clean_env,
    compare_detections,
    compare_probabilities,
    compare_within_spread,
    debian_userland,
    kernel_spread,
    largest_shift,
    read_detections,
    read_envelope,
    read_table,
    run_measured,
    stream_from_clips,
    synthetic_clips,
    wheel_site,
)
from kws.common import REPO, UserError, require_dir
from kws.folders import list_test_clips
from kws.pibundle import build_bundle, pinned, pinned_venv, unpack
from kws.runtime import KERNELS_ENV, RUNTIMES

STREAM_CLIPS = 8  # clips strung into the stream (12 s: ~30 s emulated)
# Low, so that generated clips fire detections too: the check compares them, not their accuracy
STREAM_THRESHOLD = 0.5



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
            raise UserError(f"--time_model takes NAME=M.tflite (or M.pb) of an existing file, "
                            f"got {spec}")
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
    results = {"bundle": os.path.basename(archive), "model": model, "clips": len(paths),
               "clip_source": args.clips or "generated", "stream_seconds": stream_seconds,
               "arches": {}}
    for name in (list(ARCHES) if args.arch == "all" else [args.arch]):
        results["arches"][name] = check_arch(ARCHES[name], args, bundle, model, clips, paths,
                                             raw, timed, os.path.join(work, name))
    results["ok"] = all(r["ok"] for r in results["arches"].values())
    return results


def check_arch(arch, args, bundle, model, clips, paths, raw, timed, work):
    """The bundle on arch under qemu against x86 with the same pinned versions."""
    requirements = os.path.join(bundle, arch.requirements)
    print(f"{arch.machine}: x86 venv of {arch.requirements}, Debian {arch.name} userland, qemu, "
          f"{arch.machine} wheels (cached after the first run)", file=sys.stderr)
    x86 = Machine("x86-64", [pinned_venv(requirements)], clean_env(), bundle)
    command, env = arm_python(debian_userland(args.cache, arch),
                              wheel_site(args.cache, requirements, arch), arch)
    arm = Machine(f"{arch.machine} (qemu {arch.cpu})", command, env, bundle)
    runs = {}
    for machine, tag in ((x86, "x86"), (arm, "arm")):
        print(f"{machine.name}: the Pi script on {len(paths)} clips, label_stream.py on "
              f"{os.path.getsize(raw) / 32000:.0f} s", file=sys.stderr)
        runs[tag] = {"clips": machine.label_clips(model, clips, os.path.join(work, tag, "clips")),
                     "stream": machine.label_stream(model, raw, os.path.join(work, tag, "stream"))}
    x86_probs, labels = read_table(os.path.join(work, "x86", "clips", "probs.csv"), "fname")
    arm_probs, _ = read_table(os.path.join(work, "arm", "clips", "probs.csv"), "fname")
    x86_hops, _ = read_table(os.path.join(work, "x86", "stream", "scores.csv"), "time_ms")
    arm_hops, _ = read_table(os.path.join(work, "arm", "stream", "scores.csv"), "time_ms")
    envelope = x86_envelope(x86, model, clips, work)
    x86_found = read_detections(os.path.join(work, "x86", "stream", "detections.csv"))
    arm_found = read_detections(os.path.join(work, "arm", "stream", "detections.csv"))
    if arch.reference is None:
        compare = {
            "clips": compare_probabilities(x86_probs, arm_probs, labels, envelope),
            "stream_hops": compare_probabilities(x86_hops, arm_hops, labels),
            "detections": compare_detections(x86_found, arm_found)}
    else:
        compare = compare_with_reference(
            arch, bundle, model, clips, raw, work, labels, envelope,
            {"x86": (x86_probs, x86_hops, x86_found), "arm": (arm_probs, arm_hops, arm_found)})
    tensorflow = (wheel_site(args.cache, tensorflow_requirements(args, work), arch,
                             resolve=True)
                  if args.arm_tensorflow and arch.name == "arm64" else None)  # none for armv7l
    return {"qemu_cpu": arch.cpu, "requirements": arch.requirements,
            "bounded_by": arch.reference and [arch.requirements, arch.reference],
            "runtime": pinned(requirements), "runs": runs, "compare": compare,
            "timed": time_models(timed, x86, arm, clips, model, work, tensorflow),
            "ok": all(c["ok"] for c in compare.values())}


def runtime_pinned(bundle, pins):
    """'tflite-runtime 2.14.0': the .tflite runtime a lock file of the bundle pins."""
    packages = {package for package, _ in RUNTIMES}
    runtime = " ".join(f"{k} {v}" for k, v in pinned(os.path.join(bundle, pins)).items()
                       if k in packages)
    if not runtime:
        raise UserError(f"{pins} of the bundle pins no .tflite runtime")
    return runtime


# The int8 kernel sets a runtime can run a .tflite on (kws.runtime's KWS_TFLITE_KERNELS):
# its default ones, its built-in optimized kernels without the XNNPACK delegate, and its
# reference kernels
KERNEL_SETS = ("default", "builtin", "reference")


def kernel_runs(arch, bundle, model, clips, raw, work):
    """{name: (clip probs, hop probs, detections)} of the bundle on x86 under every int8 kernel
    set of both runtimes (arch.requirements' and arch.reference's pins), the x86 run's own
    (this runtime's default kernels) left out: kernels that round differently from the x86
    run's, a stand-in for the ARM build's (32-bit tflite-runtime's NEON kernels round unlike
    its x86 ones)."""
    with open(os.path.join(bundle, "kws", "runtime.py"), encoding="utf-8") as f:
        if KERNELS_ENV not in f.read():
            raise UserError(f"the bundle's kws/runtime.py predates {KERNELS_ENV}: its x86 kernel "
                            "sets cannot be chosen, so nothing bounds 32-bit ARM (build a new "
                            "bundle: make pi-bundle)")
    runtimes = {pins: runtime_pinned(bundle, pins) for pins in (arch.requirements, arch.reference)}
    if len(set(runtimes.values())) < 2:
        raise UserError(f"{arch.requirements} and {arch.reference} pin the same runtime: the "
                        "32-bit bound needs two")
    runs = {}
    for pins, runtime in runtimes.items():
        for kernels in KERNEL_SETS:
            if pins == arch.requirements and kernels == "default":
                continue  # the x86 run itself
            machine = Machine("x86-64", [pinned_venv(os.path.join(bundle, pins))],
                              clean_env(**{KERNELS_ENV: kernels}), bundle)
            out = os.path.join(work, "x86-kernels", f"{pins}-{kernels}")
            machine.label_clips(model, clips, os.path.join(out, "clips"))
            machine.label_stream(model, raw, os.path.join(out, "stream"))
            runs[f"{runtime} {kernels}"] = (
                read_table(os.path.join(out, "clips", "probs.csv"), "fname")[0],
                read_table(os.path.join(out, "stream", "scores.csv"), "time_ms")[0],
                read_detections(os.path.join(out, "stream", "detections.csv")))
    return runs


def compare_with_reference(arch, bundle, model, clips, raw, work, labels, envelope, tables):
    """The ARM run against x86, judged by how far int8 kernels that round differently move the
    model from that x86 run on x86 itself (kernel_spread of x86's other kernel sets, both
    runtimes', kernel_runs, over clips and hops together). tables: {x86, arm: (clip probs, hop
    probs, detections)}."""
    (x86_probs, x86_hops, x86_found), (arm_probs, arm_hops, arm_found) = \
        tables["x86"], tables["arm"]
    own = f"{runtime_pinned(bundle, arch.requirements)} default"
    runs = {own: (x86_probs, x86_hops, x86_found),
            **kernel_runs(arch, bundle, model, clips, raw, work)}
    spread = kernel_spread({name: {**{f"clip {k}": v for k, v in probs.items()},
                                   **{f"hop {k}": v for k, v in hops.items()}}
                            for name, (probs, hops, _) in runs.items()}, own)
    shifts = [largest_shift(x86_found, found) for _, _, found in runs.values()]
    shift = max((s for s in shifts if s is not None), default=None)
    stride = float(np.median(np.diff(sorted(float(t) for t in x86_hops))))
    return {
        "clips": compare_within_spread(x86_probs, arm_probs, labels, spread, envelope),
        "stream_hops": compare_within_spread(x86_hops, arm_hops, labels, spread),
        "detections": compare_detections(x86_found, arm_found, tolerance=1.0,
                                         shift_ms=max(stride, shift or 0),
                                         marginal_below=STREAM_THRESHOLD + spread["worst"])}


def tensorflow_requirements(args, work):
    """A requirements file of TensorFlow for the ARM side's .pb timings."""
    path = os.path.join(work, "tensorflow-requirements.txt")
    os.makedirs(work, exist_ok=True)
    with open(path, "w") as f:
        f.write(f"tensorflow=={args.arm_tensorflow}\nsoundfile\ntqdm\n")
    return path


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


def time_models(timed, x86, arm, clips, bundled, work, tensorflow=None):
    """Per-clip median latency of each model on each machine, and its ratio to the bundled
    model's on the same machine. A .pb runs on ARM only when TensorFlow for ARM was installed
    (--arm_tensorflow) and never in the x86 venv, which has none."""
    if not timed:
        return {}
    table = {}
    for name, path in {"bundled": bundled, **timed}.items():
        for tag, machine in (("x86", x86), ("arm", arm)):
            if path.endswith(".pb"):
                if tag == "x86" or tensorflow is None:
                    continue
                machine = Machine(machine.name, machine.command,
                                  {**machine.env, "PYTHONPATH": tensorflow,
                                   "TF_CPP_MIN_LOG_LEVEL": "3"}, machine.bundle)
            figures = machine.label_clips(path, clips, os.path.join(work, tag, "timed", name))
            table.setdefault(name, {})[tag] = {"latency_ms_median": figures["latency_ms_median"],
                                               "peak_rss_mib": figures["peak_rss_mib"]}
    for name in table:
        for tag in table[name]:
            table[name][tag]["ratio_to_bundled"] = (table[name][tag]["latency_ms_median"]
                                                    / table["bundled"][tag]["latency_ms_median"])
    return table


def within_spread(r):
    """What compare_within_spread allowed, in words."""
    k = r["kernel_spread"]
    return (f" (allowed {r['tolerance']:.6f}), {TYPICAL_QUANTILE:.0%} of rows within "
            f"{r['typical_difference']:.6f} (allowed {r['typical_tolerance']:.6f}): x86's other "
            f"int8 kernels move it by up to {k['worst']:.6f} ({k['farthest']}), "
            f"{TYPICAL_QUANTILE:.0%} of rows within {k['typical']:.6f}")


def report(results):
    for name, arch in results["arches"].items():
        c = arch["compare"]
        for what in ("clips", "stream_hops"):
            r = c[what]
            if "rows" not in r:
                print(f"{name} {what}: {r['reason']}")
                continue
            print(f"{name} {what}: {r['rows']} rows, {r['rows_within_tolerance']} within one "
                  f"int8 step, largest difference {r['max_abs_difference']:.6f}"
                  + (within_spread(r) if "kernel_spread" in r else "")
                  + f"; {len(r['rows_beyond_envelope'])} beyond x86's rounding envelope; "
                  f"{len(r['label_differences'])} label differences ("
                  + (f"{len(r['label_differences_beyond_a_tie'])} where x86's top two differ "
                     f"by more than {r['tie']:.6f}" if "kernel_spread" in r else
                     f"{len(r['label_differences_beyond_envelope'])} beyond the envelope")
                  + ")")
        d = c["detections"]
        print(f"{name} detections: {d['x86']} on x86, {d['arm']} on {name}"
              + (f", times within {d['shift_ms']:.0f} ms" if d["shift_ms"] else ", equal")
              + (f"; {d['marginal_left_out']} within x86's kernel spread of the threshold "
                 "left out (the hops bound them)" if d.get("marginal_left_out") else "")
              + ("" if d["ok"] else f", first difference {d['first_difference']}"))
        for tag, run in arch["runs"].items():
            print(f"{name} {tag}: Pi script {run['clips']['wall_seconds']:.1f} s "
                  f"(median {run['clips']['latency_ms_median']:.2f} ms a clip), stream "
                  f"{run['stream']['wall_seconds']:.1f} s, peak RSS "
                  f"{max(run['clips']['peak_rss_mib'], run['stream']['peak_rss_mib']):.0f} MiB")
        for model, row in arch["timed"].items():
            print(f"{name} timed {model}: " + ", ".join(
                f"{tag} {v['latency_ms_median']:.2f} ms ({v['ratio_to_bundled']:.2f}x bundled)"
                for tag, v in row.items()))
        print(f"{name} ({arch['qemu_cpu']}, {arch['requirements']}) check "
              + ("passed" if arch["ok"] else "FAILED"))
    print("ARM check " + ("passed" if results["ok"] else "FAILED") + ": labels and "
          "probabilities " + ("agree" if results["ok"] else "differ") + " with x86 ("
          + ", ".join(results["arches"]) + ")")


def to_json(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))
