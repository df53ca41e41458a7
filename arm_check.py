"""Run the Pi bundle on ARM Linux under emulation and check it labels as on x86 (make arm-check).

    python arm_check.py                                   # bundle the shipped model and check it
    python arm_check.py --bundle dist/kws-pi-0.1.0.tar.gz --clips ../shared/data/some_folder

Unpacks the bundle into an empty folder, then runs its Pi script on a folder of clips and its
label_stream.py on a stream piped to `--raw -` (as arecord would), on x86 in a virtual env of
exactly the bundle's pinned versions and on ARM: 64-bit (Debian bookworm's arm64 python3.11
under Debian trixie's qemu-aarch64 on a Cortex-A53, requirements-pi.txt's aarch64 wheels) and
32-bit (armhf python3.11 with Debian's numpy under qemu-arm on a Cortex-A7,
requirements-pi-armv7.txt), each against x86 with its own pins. Passes when every stream hop's
probabilities agree within one int8 output step (1/256), the detections are equal, and every
clip's probabilities lie within x86's own rounding envelope (what x86 gives when the input moves
by float rounding: the whole model's float front end can round differently on another CPU); a
label differs only where that envelope holds both. 32-bit ARM's int8 kernels round unlike
x86's, so there the yardstick is how far x86's other kernel sets (both runtimes' default,
built-in and reference kernels) move the model from the x86 run on the same inputs: the ARM
run's typical (95th percentile) row may differ as much as theirs plus a step, its worst 1.5x
their worst plus a step. No root-only step: Debian packages and wheels are fetched into
~/.cache/kws-arm (a second run needs no network); see kws/armcheck.py.
`--time_model NAME=M.tflite` also times other models on the same clips on both machines, for
ratios (emulated times are not a Pi's). Exit 1 when the check fails.
"""

import argparse
import json
import os
import tempfile

from kws.armcheck import ARCHES, CACHE
from kws.armrun import check, parse_time_models, report, to_json
from kws.common import UserError, require_dir, run_cli, write_metrics
from kws.shipped import DEFAULT_MODEL


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
                   help="also time this model (.tflite, or .pb with --arm_tensorflow) on the "
                        "clips on both machines (repeatable)")
    p.add_argument("--arch", choices=[*ARCHES, "all"], default="all",
                   help="arm64 (64-bit Raspberry Pi OS), armhf (32-bit) or both")
    p.add_argument("--arm_tensorflow", default="", metavar="VERSION",
                   help="install this TensorFlow on the ARM side so --time_model takes a .pb "
                        "(2.20.0 is the newest with an aarch64 wheel; ~1.7 GB)")
    p.add_argument("--cache", default=CACHE, help="where downloads and the userland are kept")
    p.add_argument("--work_dir", default="", help="keep the runs' files here (default: temp)")
    p.add_argument("--metrics_json", default="", help="also write the results as JSON")
    return p


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


if __name__ == "__main__":
    run_cli(main)
