"""train.py's experiment configs and flag checks: the choices its flags take, a numbered
experiment's JSON file of defaults, and the checks a resolved set of flags must pass.
Light: a bad flag or config answers before TensorFlow starts."""

import json
import os

from kws.common import UserError, require_file
from kws.train.cluster import parse_tf_config

OPTIMIZERS = ("sgd", "rmsprop", "adam")
LR_SCHEDULES = ("plateau", "cosine")
STRATEGIES = ("default", "mirrored", "multi_worker")
LR_SCALINGS = ("none", "linear")


def read_config(path, known):
    """The defaults a config file (experiments/NNN.json) sets; `known`: the flags' dests.
    Its "description" is for readers only; any other unknown key is a one-line error."""
    require_file(path, "config file")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    unknown = sorted(set(config) - set(known) - {"description"})
    if unknown:
        raise UserError(f"{path}: unknown keys {unknown}")
    config.pop("description", None)
    return config


def check_args(args):
    """Check the resolved flags (one-line UserErrors) and fill in what follows from them:
    the experiment's name and, for --strategy multi_worker, the TF_CONFIG cluster."""
    if not args.data_dir:
        raise UserError("--data_dir is required (on the command line or in the config)")
    if not args.exp_name:
        args.exp_name = os.path.splitext(os.path.basename(args.config))[0] if args.config \
            else args.model
    for name in ("batch_size", "epochs"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1")
    if not 0 <= args.distill_weight <= 1 or args.distill_temperature <= 0:
        raise UserError("need 0 <= --distill_weight <= 1 and --distill_temperature > 0")
    if not 0 <= args.label_smoothing < 1:
        raise UserError("--label_smoothing must be in [0, 1)")
    if not 0 <= args.ema_momentum < 1:
        raise UserError("--ema_momentum must be in [0, 1)")
    if args.pack:
        check_pack_args(args)
    if args.cpu_devices < 0 or (args.cpu_devices and args.strategy != "mirrored"):
        raise UserError("--cpu_devices takes N >= 1 with --strategy mirrored only")
    args.cluster = parse_tf_config(os.environ.get("TF_CONFIG")) \
        if args.strategy == "multi_worker" else None
    return args


def check_pack_args(args):
    if not 0 < args.pack_frequency < 1:
        raise UserError("--pack_frequency must be in (0, 1)")
    if args.teacher_probs:
        raise UserError("--pack takes teachers as --teacher_checkpoint (a probabilities "
                        "file has no rows for the pack's images)")
    require_file(args.pack, "spectrogram pack")
    if args.strategy != "default":
        raise UserError("--pack trains on one device for now: its batches are not split "
                        "between replicas")
