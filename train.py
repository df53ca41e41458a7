"""Train a keyword-spotting model on raw audio from an AudioProcessor's tf.data pipeline.

    python train.py --config experiments/195.json --data_dir data/synthetic/train

A config file holds a numbered experiment's recipe; flags override it, and the resolved config is
saved as checkpoints/<exp>/config.json. Writes checkpoints/<exp>/ep-<epoch>-vl-<val_loss>.keras,
labels.txt, last.keras, state.json + resume/ (for --resume), logs/<exp>/ (TensorBoard, log.csv,
a confusion matrix per epoch). Knowledge distillation from teacher checkpoints or a probabilities
file, and pseudo-labelled folders mixed in with --pseudo_frequency. --strategy mirrored (local
GPUs, or --cpu_devices N logical CPUs) and multi_worker (the processes TF_CONFIG names) train on
several devices: --batch_size is the global batch, and the run computes what one device does.
The training itself is kws/train/ (its __init__ says which module holds what).
"""

import argparse
import json

from kws.augment import Augmentation
from kws.common import run_cli
from kws.data import add_data_args
from kws.train.config import (
    LR_SCALINGS,
    LR_SCHEDULES,
    OPTIMIZERS,
    STRATEGIES,
    check_args,
    read_config,
)
from kws.train.plan import plan_run


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="JSON file of defaults (experiments/NNN.json)")
    parser.add_argument("--exp_name", help="experiment name (default: the config's name)")
    add_data_args(parser, data_dir_required=False)
    add_model_args(parser)
    add_augmentation_args(parser)
    add_distillation_args(parser)
    add_pack_args(parser)
    add_run_args(parser)
    return parser


def add_model_args(parser):
    g = parser.add_argument_group("model and optimisation")
    g.add_argument("--arch", "--model", dest="model", default="ds_cnn_s",
                   help="the architecture: a name from `python model.py --list`")
    g.add_argument("--model_options", type=json.loads, default={},
                   help='JSON dict of build_model options, e.g. \'{"width": 1.5}\'')
    g.add_argument("--init_checkpoint",
                   help="start from this checkpoint's weights (a warm start: the same model, "
                   "width and labels)")
    g.add_argument("--batch_size", type=int, default=100)
    g.add_argument("--epochs", type=int, default=30)
    g.add_argument("--max_minutes", type=float, default=0,
                   help="stop after the epoch that passes this wall-clock budget (0: no limit)")
    g.add_argument("--max_cpu_minutes", type=float, default=0,
                   help="stop after the epoch that passes this much process CPU time (0: no "
                        "limit): a fixed budget on a shared machine")
    g.add_argument("--cap_minutes", type=float, default=0,
                   help="a safety cap on wall-clock time (0: none): stop after the epoch that "
                        "passes it; unlike --max_minutes it never shapes the cosine schedule, so "
                        "a recipe budgeted in --epochs gives the same model on any machine")
    g.add_argument("--steps_per_epoch", type=int, default=0,
                   help="batches per epoch (0: one pass over the training set)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    g.add_argument("--learning_rate", type=float, default=1e-3)
    g.add_argument("--momentum", type=float, default=0.9, help="for sgd and rmsprop")
    g.add_argument("--weight_decay", type=float, default=0.0, help="decoupled weight decay")
    g.add_argument("--label_smoothing", type=float, default=0.0)
    g.add_argument("--ema_momentum", type=float, default=0.0,
                   help="keep an exponential moving average of the weights, updated every step "
                        "with this momentum (e.g. 0.999; 0: off): validation, checkpoints and "
                        "the saved model use the average")
    g.add_argument("--lr_schedule", choices=LR_SCHEDULES, default="plateau",
                   help="plateau: ReduceLROnPlateau on val_accuracy; cosine: warm-up, then a "
                        "cosine decay to --min_lr that ends at --epochs or at the time budget, "
                        "whichever comes first")
    g.add_argument("--warmup_epochs", type=int, default=0,
                   help="cosine: epochs of linear warm-up from a tenth of the scheduled rate")
    g.add_argument("--train_on_validation", action=argparse.BooleanOptionalAction, default=False,
                   help="also train on the validation speakers (a final fit after tuning; "
                        "val_accuracy is then no longer held out)")
    g.add_argument("--lr_factor", type=float, default=0.5, help="ReduceLROnPlateau factor")
    g.add_argument("--lr_patience", type=int, default=4, help="ReduceLROnPlateau patience")
    g.add_argument("--min_lr", type=float, default=1e-5)


def add_augmentation_args(parser):
    g = parser.add_argument_group("augmentation (training only)")
    for field, default in Augmentation().__dict__.items():
        kind = str if isinstance(default, str) else float
        g.add_argument(f"--{field}", type=kind, default=default)


def add_distillation_args(parser):
    g = parser.add_argument_group("pseudo labels and distillation")
    g.add_argument("--pseudo_dir", action="append", default=[],
                   help="pseudo-labelled folder <label>/*.wav (repeatable)")
    g.add_argument("--pseudo_frequency", type=float, default=0.0,
                   help="probability that a training example comes from the pseudo pool")
    g.add_argument("--teacher_checkpoint", action="append", default=[],
                   help="teacher .keras checkpoint (repeatable: an ensemble's mean); with "
                   "--pack it must have the pack front end and labels the pack images too")
    g.add_argument("--teacher_probs", help="probabilities CSV (fname,<label>...) of a teacher")
    g.add_argument("--distill_temperature", type=float, default=2.0)
    g.add_argument("--distill_weight", type=float, default=0.5,
                   help="weight of the teacher's soft targets against the hard labels")


def add_pack_args(parser):
    g = parser.add_argument_group("the spectrogram pack (a model with features=pack)")
    g.add_argument("--pack", default="", help="speech_commands_v0.02_spectrograms.zip: its "
                   "images train the model's body beside the audio (through PackFeatures)")
    g.add_argument("--pack_frequency", type=float, default=0.5,
                   help="share of the training batches drawn from the pack")
    g.add_argument("--pack_cache_dir", default="data/pack", help="where the decoded pack is kept")
    g.add_argument("--pack_held_out_dir", action="append", default=[], metavar="DIR",
                   help="a folder of clips (<word>/<speaker>_nohash_<n>) training never reads, "
                        "whose speakers' pack images must not train either: the speakers of "
                        "streams or tests made from it (repeatable)")
    g.add_argument("--pack_silence", action="store_true",
                   help="also train on the pack's noise crops as silence (they come from the "
                        "recordings held-out silence is cut from)")


def add_run_args(parser):
    g = parser.add_argument_group("run")
    g.add_argument("--seed", type=int, default=59185)
    g.add_argument("--save_best_only", action="store_true",
                   help="keep only checkpoints that improve validation accuracy")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run")
    g.add_argument("--checkpoint_dir", default="checkpoints")
    g.add_argument("--log_dir", default="logs")
    g.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="default: one device; mirrored: tf.distribute.MirroredStrategy over the "
                        "local GPUs (or --cpu_devices logical CPUs); multi_worker: "
                        "MultiWorkerMirroredStrategy over the processes TF_CONFIG names (README)")
    g.add_argument("--cpu_devices", type=int, default=0,
                   help="mirrored: split the CPU into N logical devices, one replica each, "
                        "instead of using the GPUs (0: the GPUs, or the CPU if there is none)")
    g.add_argument("--lr_scaling", choices=LR_SCALINGS, default="none",
                   help="--batch_size is the global batch of one step across all replicas; "
                        "none: --learning_rate as given, whatever the replica count; linear: "
                        "--learning_rate times the number of replicas (Goyal et al.), for a "
                        "--batch_size grown with the replica count")
    g.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: all cores)")


def parse_args(argv=None):
    """Defaults < config file < flags given on the command line."""
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        parser.set_defaults(**read_config(pre.config, parser))
    return check_args(parser.parse_args(argv))


def main(argv=None):
    args = parse_args(argv)
    plan = plan_run(args)  # before TensorFlow loads: a bad data folder fails at once
    from kws.train.loop import train_model  # TensorFlow: after the flags are checked

    return train_model(args, plan)


if __name__ == "__main__":
    run_cli(main)
