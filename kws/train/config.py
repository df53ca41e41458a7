"""train.py's experiment configs and flag checks: the choices its flags take, a numbered
experiment's JSON file of defaults, and the checks a resolved set of flags must pass.
Light: a bad flag or config answers before TensorFlow starts."""

import argparse
import json
import os

from kws.common import UserError, require_dir, require_file
from kws.train.cluster import parse_tf_config

OPTIMIZERS = ("sgd", "rmsprop", "adam")
LR_SCHEDULES = ("plateau", "cosine")
STRATEGIES = ("default", "mirrored", "multi_worker")
LR_SCALINGS = ("none", "linear")


def read_config(path, parser):
    """The defaults a config file (experiments/NNN.json) sets for train.py's `parser`, each of
    the type its flag takes (config_value). Its "description" is for readers only; any other
    unknown key is a one-line error."""
    require_file(path, "config file")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except ValueError as e:  # bad JSON, or not UTF-8 text
        raise UserError(f"{path}: not a valid JSON config ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a JSON object of flag values")
    actions = {a.dest: a for a in parser._actions}
    unknown = sorted(set(config) - set(actions) - {"description"})
    if unknown:
        raise UserError(f"{path}: unknown keys {unknown}")
    config.pop("description", None)
    for key in config:
        config[key] = config_value(path, key, config[key], actions[key])
    return config


def config_value(path, key, value, action):
    """A config's value for the flag `action`, checked against the flag's type (a string is
    left to argparse, which reads it as it reads the flag); an int for a float flag becomes a
    float."""
    if action.nargs == 0:  # store_true, --flag/--no-flag
        ok, what = isinstance(value, bool) or value is action.default is None, "true or false"
    elif isinstance(action, argparse._AppendAction):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        what = "a list of strings"
    elif isinstance(value, str) and action.type is not None:
        return value
    elif action.type is int:
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif action.type is float:
        ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        value = float(value) if ok else value
    elif action.type in (None, str):
        ok, what = isinstance(value, str) or value is action.default is None, "a string"
    else:  # a parsing function (JSON, a list): the parsed value's kind, as the default has it
        kind = type(action.default)
        ok = action.default is not None and isinstance(value, kind)
        what = {dict: "a JSON object", list: "a list"}.get(kind, f"a {kind.__name__}")
    if ok and action.choices and value not in action.choices:
        ok, what = False, f"one of {', '.join(map(str, action.choices))}"
    if not ok:
        raise UserError(f"{path}: {key} must be {what}, got {json.dumps(value)[:60]}")
    return value


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
    for name in ("steps_per_epoch", "warmup_epochs", "lr_patience", "threads", "max_minutes",
                 "max_cpu_minutes", "cap_minutes", "min_lr", "weight_decay"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} must be >= 0")
    if args.learning_rate <= 0:
        raise UserError("--learning_rate must be > 0")
    if not 0 < args.lr_factor < 1:
        raise UserError("--lr_factor must be in (0, 1)")
    if not 0 <= args.momentum < 1:
        raise UserError("--momentum must be in [0, 1)")
    if not 0 <= args.distill_weight <= 1 or args.distill_temperature <= 0:
        raise UserError("need 0 <= --distill_weight <= 1 and --distill_temperature > 0")
    if not 0 <= args.label_smoothing < 1:
        raise UserError("--label_smoothing must be in [0, 1)")
    if not 0 <= args.ema_momentum < 1:
        raise UserError("--ema_momentum must be in [0, 1)")
    if args.pack:
        check_pack_args(args)
    elif args.pack_held_out_dir:
        raise UserError("--pack_held_out_dir needs --pack")
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
    for folder in args.pack_held_out_dir:
        require_dir(folder, "--pack_held_out_dir folder")
    if args.strategy != "default":
        raise UserError("--pack trains on one device for now: its batches are not split "
                        "between replicas")
