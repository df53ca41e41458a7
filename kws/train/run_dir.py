"""What a run keeps in checkpoints/<exp>/ and reads back to resume: labels.txt and config.json,
state.json (the one atomic step that commits an epoch), resume/ (the model and optimizer of the
committed epoch), and the CSV log trimmed to the committed epochs. numpy, no TensorFlow."""

import json
import os
import sys

import numpy as np

from kws.common import UserError, atomic_path, atomic_write_text, remove_partial_files


def save_run_files(exp_dir, args, labels):
    os.makedirs(exp_dir, exist_ok=True)
    atomic_write_text(os.path.join(exp_dir, "labels.txt"), "\n".join(labels) + "\n")
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "config")}
    atomic_write_text(os.path.join(exp_dir, "config.json"), json.dumps(config, indent=1))


# What makes a run that run: resuming with another value of any of these would silently go on
# training (or, when finished, report) another model than the one asked for
RUN_IDENTITY = ("model", "model_options", "seed", "wanted_words", "teacher_checkpoint",
                "teacher_probs", "init_checkpoint", "ema_momentum")
PATH_KEYS = ("teacher_checkpoint", "teacher_probs", "init_checkpoint")


def identity_value(key, value):
    """A RUN_IDENTITY value as JSON keeps it, paths made absolute (the same file however
    spelled; runs resolve them from the folder they start in)."""
    value = json.loads(json.dumps(value))
    if key in PATH_KEYS and value:
        return [os.path.abspath(v) for v in value] if isinstance(value, list) \
            else os.path.abspath(value)
    return value


def check_same_run(exp_dir, args):
    """Refuse to resume exp_dir when its config.json names another model, seed, vocabulary,
    teacher or starting point than args do (a starting point only when args give one: a
    resumed run ignores it)."""
    try:
        with open(os.path.join(exp_dir, "config.json"), encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return  # an older run without its config: nothing to compare
    for key in RUN_IDENTITY:
        asked = getattr(args, key, None)
        if key not in saved or key == "init_checkpoint" and not asked:
            continue
        if identity_value(key, saved[key]) != identity_value(key, asked):
            raise UserError(f"{exp_dir} holds a run with --{key} {saved[key]}, not {asked}: "
                            "move that folder away or choose another --exp_name")


def read_resume_state(exp_dir, args, tidy=True):
    """The state.json to resume from, or None. tidy: also remove what a killed run left
    (the chief's job: other workers only read the chief's folder)."""
    state_path = os.path.join(exp_dir, "state.json")
    if os.path.isdir(exp_dir) and tidy:
        remove_partial_files(exp_dir)
    if not args.resume:
        if os.path.exists(state_path):
            raise UserError(f"{exp_dir} holds a run already: pass --resume to continue it, or "
                            f"choose another --exp_name")
        return None
    if not os.path.exists(state_path):
        print(f"nothing to resume in {exp_dir}: starting afresh", file=sys.stderr)
        return None
    check_same_run(exp_dir, args)
    with open(state_path, encoding="utf-8") as f:
        state = json.load(f)
    for key in ("resume_model", "resume_optimizer"):
        if key not in state or not os.path.exists(os.path.join(exp_dir, state[key])):
            raise UserError(f"{state_path} names a missing {key.replace('_', ' ')}: cannot resume")
    if tidy:
        remove_stale_resume_files(exp_dir, state)
    return state


def read_committed_epoch(exp_dir):
    """The epoch that exp_dir/state.json commits (0 when there is none)."""
    try:
        with open(os.path.join(exp_dir, "state.json"), encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def resume_files(epoch):
    return f"resume/model-{epoch:03d}.keras", f"resume/optimizer-{epoch:03d}.npz"


def remove_stale_resume_files(exp_dir, state):
    """Drop resume files of other epochs: older ones, or newer ones a kill left uncommitted."""
    keep = {os.path.basename(state["resume_model"]), os.path.basename(state["resume_optimizer"])}
    resume_dir = os.path.join(exp_dir, "resume")
    remove_partial_files(resume_dir)
    for name in os.listdir(resume_dir):
        if name not in keep:
            os.remove(os.path.join(resume_dir, name))


def truncate_log(log_path, epochs):
    """Keep the CSV log's rows of committed epochs: a killed run may have logged one more."""
    if not os.path.exists(log_path):
        return
    with open(log_path, encoding="utf-8") as f:
        lines = f.readlines()
    atomic_write_text(log_path, "".join(lines[:1 + epochs]))


def save_optimizer(net, path):
    """The optimizer's slots (momentum, RMS averages, step count) as arrays, for --resume."""
    arrays = {f"v{i:04d}": v.numpy() for i, v in enumerate(net.optimizer.variables)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def restore_optimizer(net, path):
    net.optimizer.build(net.trainable_variables)
    with np.load(path) as saved:
        values = [saved[k] for k in sorted(saved.files)]
    if len(values) != len(net.optimizer.variables):
        raise UserError(f"{path} does not match this model's optimizer: cannot resume")
    for variable, value in zip(net.optimizer.variables, values):
        variable.assign(value)
