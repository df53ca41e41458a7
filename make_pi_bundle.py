"""Write the Raspberry Pi bundle: dist/kws-pi-<version>.tar.gz, one archive to copy to the device.

    python make_pi_bundle.py                        # the shipped model (models/edge_int8.tflite)
    python make_pi_bundle.py --model tf_files/real/model_int8.tflite --out_dir dist

The archive holds the Pi script, label_stream.py, the kws modules they import (none imports
TensorFlow), the model(s) with labels, streaming settings and stream body, requirements-pi.txt
(versions that exist as Linux aarch64 wheels), a README (install, label a folder, listen to a
microphone, run at boot) and a systemd unit. The version is pyproject.toml's. Each model is
loaded once here first, so a broken or mislabelled one stops the build; `--check_runtimes` also
loads it with every runtime the bundle pins (the oldest is tflite-runtime 2.14.0), so a model
frozen for a newer one stops it too. The code is
kws/pibundle.py; `make arm-check` runs the bundle on emulated ARM64.
"""

import argparse
import os

from kws.common import run_cli, write_metrics
from kws.pibundle import build_bundle, check_pinned_runtimes, project_version
from kws.shipped import DEFAULT_MODEL


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", default=[],
                   help="a .tflite to bundle (repeatable; the first is the README's; default: "
                        "the shipped model, models/edge_int8.tflite)")
    p.add_argument("--out_dir", default="dist", help="where the archive is written")
    p.add_argument("--check_runtimes", action="store_true",
                   help="first load each model with every runtime the bundle pins (x86 venvs "
                        "of requirements-pi*.txt under ~/.cache/kws-pi; PyPI the first time)")
    p.add_argument("--metrics_json", default="", help="also write the path and size as JSON")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    models = args.model or [DEFAULT_MODEL]
    if args.check_runtimes:
        for lock, runtime in check_pinned_runtimes(models).items():
            print(f"loads with {runtime} ({lock})")
    path = build_bundle(models, args.out_dir)
    size = os.path.getsize(path)
    print(f"wrote {path}: {size:,} bytes")
    write_metrics(args.metrics_json, {"bundle": path, "bytes": size,
                                      "version": project_version()})
    return 0


if __name__ == "__main__":
    run_cli(main)
