"""Train a keyword-spotting model on raw audio from an AudioProcessor's tf.data pipeline.

    python train.py --config experiments/195.json --data_dir data/synthetic/train

A config file holds a numbered experiment's recipe; flags override it, and the resolved config is
saved as checkpoints/<exp>/config.json. Writes checkpoints/<exp>/ep-<epoch>-vl-<val_loss>.keras,
labels.txt, last.keras, state.json + resume/ (for --resume), logs/<exp>/ (TensorBoard, log.csv,
a confusion matrix per epoch). Knowledge distillation from teacher checkpoints or a probabilities
file, and pseudo-labelled folders mixed in with --pseudo_frequency. --strategy mirrored (local
GPUs, or --cpu_devices N logical CPUs) and multi_worker (the processes TF_CONFIG names) train on
several devices: --batch_size is the global batch, and the run computes what one device does.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np

from kws.augment import Augmentation
from kws.common import (
    UserError,
    atomic_path,
    atomic_write_text,
    remove_partial_files,
    require_file,
    run_cli,
)
from kws.data import AudioProcessor, add_data_args
from kws.labels import (
    COMPETITION_LABELS,
    SILENCE_LABEL,
    UNKNOWN_LABEL,
    competition_index,
    submission_label,
)
from kws.pack_data import mix_with_pack
from kws.recipe import best_checkpoint  # noqa: F401  (re-exported for its users)

OPTIMIZERS = ("sgd", "rmsprop", "adam")
LR_SCHEDULES = ("plateau", "cosine")
STRATEGIES = ("default", "mirrored", "multi_worker")
LR_SCALINGS = ("none", "linear")
CLUSTER_ROLES = ("chief", "worker")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="JSON file of defaults (experiments/NNN.json)")
    parser.add_argument("--exp_name", help="experiment name (default: the config's name)")
    add_data_args(parser, data_dir_required=False)
    g = parser.add_argument_group("model and optimisation")
    g.add_argument("--arch", "--model", dest="model", default="ds_cnn_s",
                   help="the architecture: a name from `python model.py --list`")
    g.add_argument("--model_options", type=json.loads, default={},
                   help='JSON dict of build_model options, e.g. \'{"width": 1.5}\'')
    g.add_argument("--init_checkpoint", help="start from this checkpoint's weights (fine-tuning)")
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
    g = parser.add_argument_group("augmentation (training only)")
    for field, default in Augmentation().__dict__.items():
        kind = str if isinstance(default, str) else float
        g.add_argument(f"--{field}", type=kind, default=default)
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
    g = parser.add_argument_group("the spectrogram pack (a model with features=pack)")
    g.add_argument("--pack", default="", help="speech_commands_v0.02_spectrograms.zip: its "
                   "images train the model's body beside the audio (through PackFeatures)")
    g.add_argument("--pack_frequency", type=float, default=0.5,
                   help="share of the training batches drawn from the pack")
    g.add_argument("--pack_cache_dir", default="data/pack", help="where the decoded pack is kept")
    g.add_argument("--pack_silence", action="store_true",
                   help="also train on the pack's noise crops as silence (they come from the "
                        "recordings held-out silence is cut from)")
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
    return parser


def parse_args(argv=None):
    """Defaults < config file < flags given on the command line."""
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        require_file(pre.config, "config file")
        with open(pre.config, encoding="utf-8") as f:
            config = json.load(f)
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(config) - known - {"description"})
        if unknown:
            raise UserError(f"{pre.config}: unknown keys {unknown}")
        config.pop("description", None)
        parser.set_defaults(**config)
    args = parser.parse_args(argv)
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
    if args.pack:
        if not 0 < args.pack_frequency < 1:
            raise UserError("--pack_frequency must be in (0, 1)")
        if args.teacher_probs:
            raise UserError("--pack takes teachers as --teacher_checkpoint (a probabilities "
                            "file has no rows for the pack's images)")
        require_file(args.pack, "spectrogram pack")
        if args.strategy != "default":
            raise UserError("--pack trains on one device for now: its batches are not split "
                            "between replicas")
    if args.cpu_devices < 0 or (args.cpu_devices and args.strategy != "mirrored"):
        raise UserError("--cpu_devices takes N >= 1 with --strategy mirrored only")
    args.cluster = parse_tf_config(os.environ.get("TF_CONFIG")) \
        if args.strategy == "multi_worker" else None
    return args


# ---- several devices and workers ----------------------------------------------------------------
def parse_tf_config(text):
    """TF_CONFIG, checked: {task_type, task_index, workers, is_chief}, or a one-line UserError.

    The cluster holds "worker" (and optionally one "chief") lists of host:port; the task names
    this process's role and index. The chief (or worker 0 without one) writes the run's files.
    """
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not text or not text.strip():
        raise UserError(f"--strategy multi_worker needs the TF_CONFIG environment variable, "
                        f"{example}")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise UserError(f"TF_CONFIG is not JSON ({e}), {example}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise UserError(f"TF_CONFIG needs a \"cluster\" object, {example}")
    unknown = sorted(set(cluster) - set(CLUSTER_ROLES))
    if unknown:
        raise UserError(f"TF_CONFIG cluster: roles {unknown} are not supported (only chief and "
                        "worker: MultiWorkerMirroredStrategy has no parameter servers)")
    seen = set()
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise UserError(f"TF_CONFIG cluster.{role} must be a non-empty list of host:port")
        for address in addresses:
            host, _, port = address.rpartition(":") if isinstance(address, str) else ("",) * 3
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise UserError(f"TF_CONFIG cluster.{role}: {address!r} is not host:port")
            if address in seen:
                raise UserError(f"TF_CONFIG cluster: {address} is listed twice")
            seen.add(address)
    if len(cluster.get("chief", [])) > 1:
        raise UserError("TF_CONFIG cluster: at most one chief")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise UserError(f"TF_CONFIG task.type must be one of {sorted(cluster)}, got "
                        f"{task.get('type') if isinstance(task, dict) else task!r}")
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or \
            not 0 <= index < len(cluster[task["type"]]):
        raise UserError(f"TF_CONFIG task.index must be 0..{len(cluster[task['type']]) - 1} for "
                        f"{task['type']}, got {index!r}")
    is_chief = task["type"] == "chief" or ("chief" not in cluster and index == 0)
    return {"task_type": task["type"], "task_index": index, "is_chief": is_chief,
            "workers": sum(len(v) for v in cluster.values())}


def make_strategy(args):
    """The tf.distribute strategy of --strategy; must run before TensorFlow starts a device."""
    import tensorflow as tf

    if args.strategy == "multi_worker":
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if args.strategy == "mirrored":
        if args.cpu_devices:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_devices)
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
            return tf.distribute.MirroredStrategy(devices,
                                                  cross_device_ops=tf.distribute.ReductionToOneDevice())
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def cluster_agreement(strategy, multi_worker):
    """f(values) -> the largest of each value over all workers (the values as they are with
    one worker): budgets and schedules that read clocks must decide the same on every worker.
    Every worker has to call it at the same points, as the callbacks do."""
    if not multi_worker:
        return lambda values: list(values)
    import tensorflow as tf

    @tf.function
    def largest(values):
        return strategy.run(lambda: tf.reduce_max(
            tf.distribute.get_replica_context().all_gather(values[None], axis=0), axis=0))

    def agree(values):
        reduced = largest(tf.constant(list(values), tf.float64))
        return [float(v) for v in strategy.experimental_local_results(reduced)[0].numpy()]

    return agree


def distributed_training_data(strategy, make_dataset):
    """strategy.distribute_datasets_from_function over make_dataset(replicas=(first, count,
    total)): each worker builds the slices of every global batch that its local replicas take,
    so each example is seen once per epoch across workers (no auto-sharding on top)."""
    import tensorflow as tf

    def dataset_fn(context):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        first = context.input_pipeline_id * local
        ds = make_dataset((first, local, context.num_replicas_in_sync))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)


# ---- losses and metrics -----------------------------------------------------------------------
def make_loss(num_classes, label_smoothing, temperature, distill_weight):
    """Cross-entropy on hard labels, blended with a distillation term where a soft target exists.

    y_true is [B, 1 + classes]: the label, then the teacher's probabilities (or -1s: no teacher).
    The soft term is Hinton's T^2 * CE(softmax(log p_teacher / T), softmax(z / T)).
    """
    import tensorflow as tf

    def loss(y_true, y_pred):
        hard = tf.cast(y_true[:, 0], tf.int32)
        onehot = tf.one_hot(hard, num_classes) * (1 - label_smoothing) + \
            label_smoothing / num_classes
        ce = tf.nn.softmax_cross_entropy_with_logits(onehot, y_pred)
        soft = y_true[:, 1:]
        has_soft = tf.reduce_min(soft, axis=1) >= 0
        teacher = tf.nn.softmax(tf.math.log(tf.maximum(soft, 1e-7)) / temperature)
        kd = temperature ** 2 * tf.nn.softmax_cross_entropy_with_logits(teacher,
                                                                        y_pred / temperature)
        blended = (1 - distill_weight) * ce + distill_weight * kd
        return tf.where(has_soft, blended, ce)

    return loss


def hard_label_accuracy(y_true, y_pred):
    import tensorflow as tf

    hard = tf.cast(y_true[:, 0], tf.int64)
    return tf.cast(tf.equal(tf.argmax(y_pred, axis=1), hard), tf.float32)


def make_optimizer(args):
    import keras

    if args.optimizer == "sgd":
        return keras.optimizers.SGD(args.learning_rate, momentum=args.momentum, nesterov=True,
                                    weight_decay=args.weight_decay or None)
    if args.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(args.learning_rate, momentum=args.momentum,
                                        weight_decay=args.weight_decay or None)
    return keras.optimizers.Adam(args.learning_rate, weight_decay=args.weight_decay or None)


# ---- teachers ---------------------------------------------------------------------------------
def load_teacher_probs(path, labels):
    """A probabilities CSV (fname,<label>...) as {fname: probabilities in the model's order}."""
    import pandas as pd

    require_file(path, "teacher probabilities")
    table = pd.read_csv(path)
    columns = [label if label in table.columns else submission_label(label) for label in labels]
    missing = [c for c in columns if c not in table.columns]
    if "fname" not in table.columns or missing:
        raise UserError(f"{path}: needs columns fname and {missing or columns}")
    if table["fname"].map(normalise_fname).duplicated().any():
        raise UserError(f"{path}: repeated fnames")
    probs = table[columns].to_numpy(np.float32)
    probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-9)
    return dict(zip(table["fname"].map(normalise_fname), probs))


def normalise_fname(fname):
    """`./yes\\X.wav` -> `yes/X.wav`: the form input_data names clips by."""
    name = str(fname).replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def print_soft_target_report(report, path):
    print(f"soft targets from {path}: {report['training_clips_with_targets']} of "
          f"{report['training_clips']} training clips, {report['pseudo_clips_with_targets']} of "
          f"{report['pseudo_clips']} pseudo-pool clips; {report['rows_used']} of "
          f"{report['teacher_rows']} teacher rows used")
    if report["rows_used"] == 0:
        print(f"warning: no row of {path} names a training clip: fnames are paths relative to "
              "the data folder (yes/X.wav), or the fnames a pseudo pool was cut from",
              file=sys.stderr)


def load_teachers(checkpoints, labels):
    """The teacher models, frozen, after checking they share the student's labels."""
    from kws.checkpoint import load_checkpoint


    teachers = []
    for path in checkpoints:
        teacher, teacher_labels = load_checkpoint(path)
        if list(teacher_labels) != list(labels):
            raise UserError(f"teacher {path} has labels {teacher_labels}, the student {labels}")
        teacher.trainable = False
        teachers.append(teacher)
    return teachers


def pack_teacher(teacher):
    """A teacher for a pack student: its model.pack_trainer, which takes the mixed batches
    ((audio, image features, from_audio)), so it labels audio clips and pack images alike."""
    from kws.layers import pack_trainer


    try:
        return pack_trainer(teacher)
    except UserError:
        raise UserError(f"a teacher of a --pack student needs the pack front end too; "
                        f"{teacher.name} has none") from None


def teacher_targets(dataset, teachers):
    """Replace the soft targets of every batch with the mean softmax of teacher models."""
    import tensorflow as tf

    def add(x, y):
        probs = tf.add_n([tf.nn.softmax(t(x, training=False)) for t in teachers]) / len(teachers)
        return x, tf.concat([y[:, :1], probs], axis=1)

    return dataset.map(add)


# ---- evaluation callback ----------------------------------------------------------------------
def confusion(true, pred, n):
    return np.bincount(true * n + pred, minlength=n * n).reshape(n, n)


def make_eval_callback(val_data, labels, log_dir):
    """One pass over the validation set per epoch: val_loss, val_accuracy, the confusion matrix,
    and for all-words models the mean per-class accuracy over the 12 competition classes."""
    import keras
    import tensorflow as tf

    to12 = competition_index(labels)
    all_words = list(labels) != COMPETITION_LABELS

    class EvalCallback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logits, truth = [], []
            for x, y in val_data:
                logits.append(self.model(x, training=False).numpy())
                truth.append(y.numpy())
            logits, truth = np.concatenate(logits), np.concatenate(truth).astype(int)
            loss = tf.keras.losses.sparse_categorical_crossentropy(truth, logits, from_logits=True)
            pred = logits.argmax(1)
            logs["val_loss"] = float(np.mean(loss))
            logs["val_accuracy"] = float(np.mean(pred == truth))
            matrix = confusion(truth, pred, len(labels))
            if all_words:
                m12 = confusion(to12[truth], to12[pred], len(COMPETITION_LABELS))
                recall = np.diag(m12) / np.maximum(m12.sum(1), 1)
                logs["val_accuracy_12"] = float(np.mean(recall[m12.sum(1) > 0]))
            write_confusion(os.path.join(log_dir, f"confusion-ep{epoch + 1:03d}.csv"), matrix,
                            labels)

    return EvalCallback()


def write_confusion(path, matrix, labels):
    rows = ["true\\pred," + ",".join(labels)]
    rows += [f"{label}," + ",".join(map(str, row)) for label, row in zip(labels, matrix)]
    atomic_write_text(path, "\n".join(rows) + "\n")


def make_budget_callback(minutes, cpu_minutes, batch_size, spent=None, epochs=0, cap_minutes=0,
                         agree=None):
    """Log training throughput; stop after the first epoch that ends past a time budget
    (wall clock, or this process's CPU time, which a busy machine does not eat into) or past
    the wall-clock cap. `stopped_by` says which budget ended the run ("epochs" when all ran).
    `spent` is what earlier, interrupted runs used: a resumed run finishes the same budget.
    `agree` (see cluster_agreement) makes every worker read the same, largest time used."""
    import time

    import keras

    class Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.cpu_start = time.monotonic(), time.process_time()
            self.spent = dict(spent or {"wall_seconds": 0.0, "cpu_seconds": 0.0})
            self.stopped_by = None

        def used(self):
            wall, cpu = (agree or list)([
                self.spent["wall_seconds"] + time.monotonic() - self.start,
                self.spent["cpu_seconds"] + time.process_time() - self.cpu_start])
            return {"wall_seconds": wall, "cpu_seconds": cpu}

        def fraction_used(self):
            return budget_fraction(self.used(), minutes, cpu_minutes)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start, self.batches = time.monotonic(), 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches, self.batches_end = batch + 1, time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            seconds = self.batches_end - self.epoch_start
            logs["examples_per_second"] = self.batches * batch_size / max(seconds, 1e-9)
            used = self.used()
            self.stopped_by = stop_reason(used, epoch + 1, epochs, minutes, cpu_minutes,
                                          cap_minutes)
            if self.stopped_by and self.stopped_by != "epochs":
                print(f"{self.stopped_by} reached ({used['wall_seconds'] / 60:.1f} min, "
                      f"{used['cpu_seconds'] / 60:.1f} CPU min): stopping after epoch {epoch + 1}")
                self.model.stop_training = True

    return Budget()


def stop_reason(used, epochs_done, epochs, minutes, cpu_minutes, cap_minutes):
    """Which budget ends training after this epoch, or None to go on."""
    if minutes and used["wall_seconds"] >= minutes * 60:
        return "wall-clock budget"
    if cpu_minutes and used["cpu_seconds"] >= cpu_minutes * 60:
        return "CPU budget"
    if cap_minutes and used["wall_seconds"] >= cap_minutes * 60:
        return "wall-clock cap"
    return "epochs" if epochs and epochs_done >= epochs else None


def budget_fraction(used, minutes, cpu_minutes):
    """The larger share of the wall and CPU budgets that `used` spent (0 with no budget)."""
    return max(used["wall_seconds"] / (minutes * 60) if minutes else 0,
               used["cpu_seconds"] / (cpu_minutes * 60) if cpu_minutes else 0)


def cosine_learning_rate(progress, peak, floor, warmup=1.0):
    """A half cosine from peak (progress 0) to floor (progress 1), times a warm-up factor
    in [0.1, 1] that train.py raises linearly over the first --warmup_epochs."""
    rate = floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return rate * warmup


def make_cosine_callback(args, budget):
    """Set each epoch's learning rate from the progress through --epochs or the time budget,
    whichever is further along, so the decay completes even when time runs out first."""
    import keras

    class Cosine(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            progress = max(epoch / max(args.epochs - 1, 1), budget.fraction_used())
            warmup = min(1.0, 0.1 + 0.9 * epoch / args.warmup_epochs) if args.warmup_epochs \
                else 1.0
            rate = cosine_learning_rate(progress, args.learning_rate, args.min_lr, warmup)
            self.model.optimizer.learning_rate.assign(rate)

        def on_epoch_end(self, epoch, logs=None):
            logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())

    return Cosine()


def make_checkpoint_callback(exp_dir, save_best_only, plateau, budget, keep_last=False,
                             saved=None, replicas=1):
    """Atomic per-epoch checkpoints, and the resume point: model + optimizer, then state.json.

    The model and optimizer of epoch N go to resume/*-NNN.* first; writing state.json that names
    them is the one atomic step that commits epoch N. A run killed at any moment therefore
    resumes from a matching model, optimizer and state. last.keras, a copy for users, is written
    before the commit: a kill in between only means the epoch is trained again.
    keep_last: validation is not held out, so the run's result is its last epoch, not its best.
    saved: the model to write, when what trains wraps it (a pack model's pack_trainer); the
    optimizer is always the training model's.
    """
    import keras

    class Checkpointer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = -math.inf
            self.best_name = None

        def on_epoch_end(self, epoch, logs=None):
            acc = logs["val_accuracy"]
            name = f"ep-{epoch + 1:03d}-vl-{logs['val_loss']:.4f}.keras"
            target = saved if saved is not None else self.model
            if not save_best_only or (acc > self.best and not keep_last):
                with atomic_path(os.path.join(exp_dir, name)) as tmp:
                    target.save(tmp)
            if keep_last:
                self.best, self.best_name = acc, "last.keras"
            elif acc > self.best:
                self.best, self.best_name = acc, name
            model_file, optimizer_file = resume_files(epoch + 1)
            with atomic_path(os.path.join(exp_dir, model_file)) as tmp:
                target.save(tmp)
            save_optimizer(self.model, os.path.join(exp_dir, optimizer_file))
            with atomic_path(os.path.join(exp_dir, "last.keras")) as tmp:
                shutil.copyfile(os.path.join(exp_dir, model_file), tmp)
            state = {"epoch": epoch + 1, "best_val_accuracy": self.best,
                     "learning_rate": float(self.model.optimizer.learning_rate.numpy()),
                     "plateau_wait": plateau.wait, "plateau_cooldown": plateau.cooldown_counter,
                     "plateau_best": plateau.best and float(plateau.best), "last_checkpoint": name,
                     "best_checkpoint": self.best_name, "resume_model": model_file,
                     "resume_optimizer": optimizer_file, "time_used": budget.used(),
                     "stopped_by": budget.stopped_by, "replicas": replicas}
            atomic_write_text(os.path.join(exp_dir, "state.json"), json.dumps(state, indent=1))
            remove_stale_resume_files(exp_dir, state)

    return Checkpointer()


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


# ---- main -------------------------------------------------------------------------------------
def configure_tensorflow(args):
    """Threads, seeds, determinism, and the --strategy (made before any device starts)."""
    import keras
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    strategy = make_strategy(args)
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    return strategy


def make_processor(args):
    return AudioProcessor.from_settings(vars(args))


def synchronise_batch_norm(net):
    """Batch normalisation over the global batch, not each replica's share: N replicas then
    compute what one device does with the same --batch_size (one all-reduce per layer a step)."""
    import keras

    for layer in net._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def build_and_compile(args, num_classes, exp_dir, resume_state, replicas=1):
    import keras

    from kws.layers import pack_trainer
    from kws.zoo import build_model

    loss = make_loss(num_classes, args.label_smoothing, args.distill_temperature,
                     args.distill_weight)
    metric = keras.metrics.MeanMetricWrapper(hard_label_accuracy, name="accuracy")
    if resume_state:
        net = keras.models.load_model(os.path.join(exp_dir, resume_state["resume_model"]),
                                      compile=False, safe_mode=True)
    else:
        net = build_model(args.model, num_classes, **args.model_options)
        if args.init_checkpoint:
            require_file(args.init_checkpoint, "init checkpoint")
            net.load_weights(args.init_checkpoint, skip_mismatch=True)
    if replicas > 1:
        synchronise_batch_norm(net)
    trainer = pack_trainer(net) if args.pack else net
    trainer.compile(optimizer=make_optimizer(args), loss=loss, metrics=[metric])
    if resume_state:
        restore_optimizer(trainer, os.path.join(exp_dir, resume_state["resume_optimizer"]))
        trainer.optimizer.learning_rate.assign(resume_state["learning_rate"])
    return net, trainer


def with_pack(args, processor, train, val, net, audio_steps):
    """(training batches for model.pack_trainer: audio clips mixed with pack images,
    validation batches, steps per epoch)."""
    from kws.layers import PackFeatures, front_end_layer
    from kws.pack import read_pack

    train, val, report = mix_with_pack(
        processor, train, val, front_end_layer(net, PackFeatures),
        read_pack(args.pack, args.pack_cache_dir), args.pack_frequency, args.batch_size,
        args.seed, args.train_on_validation, args.pack_silence,
        shift_frames=round(args.time_shift_ms / 10))  # the pack's frames are 10 ms apart
    print(f"pack: {report['images']:,} images train ({report['held_out_speakers']} held-out "
          "speakers left out)")
    return train, val, math.ceil(audio_steps / (1 - args.pack_frequency))


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


def main(argv=None):
    args = parse_args(argv)
    is_chief = args.cluster is None or args.cluster["is_chief"]
    exp_dir = os.path.join(args.checkpoint_dir, args.exp_name)
    log_dir = os.path.join(args.log_dir, args.exp_name)
    resume_state = read_resume_state(exp_dir, args, tidy=is_chief)
    processor = make_processor(args)  # before TensorFlow loads: a bad data folder fails at once
    strategy = configure_tensorflow(args)
    with worker_dirs(exp_dir, log_dir, is_chief) as (out_dir, out_log_dir):
        return train_model(args, strategy, processor, resume_state, exp_dir, out_dir,
                           out_log_dir)


@contextlib.contextmanager
def worker_dirs(exp_dir, log_dir, is_chief):
    """Where this process writes: the run's folders for the chief; for another worker, a
    temporary folder removed at the end (Keras' multi-worker pattern: every worker saves, so
    that all take part in the same steps, but only the chief's files are kept)."""
    if is_chief:
        yield exp_dir, log_dir
        return
    scratch = tempfile.mkdtemp(prefix="kws-worker-")
    try:
        yield os.path.join(scratch, "checkpoints"), os.path.join(scratch, "logs")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def train_model(args, strategy, processor, resume_state, exp_dir, out_dir, log_dir):
    import keras
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync
    if args.batch_size % replicas:
        raise UserError(f"--batch_size {args.batch_size} is the global batch: it must be a "
                        f"multiple of the {replicas} replicas")
    os.makedirs(log_dir, exist_ok=True)
    labels = processor.words_list
    augmentation = Augmentation.from_dict(vars(args))
    save_run_files(out_dir, args, labels)
    print_sets(processor)
    distributed = args.strategy != "default"
    if args.lr_scaling == "linear":
        args.learning_rate *= replicas
    if distributed:
        print(f"{args.strategy}: {replicas} replicas"
              + (f" over {args.cluster['workers']} workers, this one "
                 f"{args.cluster['task_type']} {args.cluster['task_index']}"
                 if args.cluster else "")
              + f"; global batch {args.batch_size} ({args.batch_size / replicas:g} a replica), "
              f"learning rate {args.learning_rate:g}")

    initial_epoch = resume_state["epoch"] if resume_state else 0
    if initial_epoch >= args.epochs or budget_spent(resume_state, args):
        print(f"{exp_dir}: already trained for {initial_epoch} epochs, within its budget")
        return 0
    soft = load_teacher_probs(args.teacher_probs, labels) if args.teacher_probs else None
    steps = args.steps_per_epoch or processor.steps_per_epoch(args.batch_size)
    teachers = load_teachers(args.teacher_checkpoint, labels) if args.teacher_checkpoint else []

    def training_data(shard=None):
        ds = processor.dataset("training", args.batch_size, augmentation, seed=args.seed,
                               initial_epoch=initial_epoch, epochs=args.epochs,
                               steps_per_epoch=steps,
                               soft_targets=soft if soft is not None else {}, replicas=shard)
        # a pack model's teachers see the mixed batches, after with_pack
        return teacher_targets(ds, teachers) if teachers and not args.pack else ds

    train = distributed_training_data(strategy, training_data) if distributed \
        else training_data()
    if soft is not None:
        print_soft_target_report(processor.soft_target_report, args.teacher_probs)
    val = processor.dataset("validation", args.batch_size)

    with strategy.scope():
        net, trainer = build_and_compile(args, len(labels), exp_dir, resume_state, replicas)
    if args.pack:
        train, val, steps = with_pack(args, processor, train, val, net, steps)
        if teachers:
            train = teacher_targets(train, [pack_teacher(t) for t in teachers])
    plateau = keras.callbacks.ReduceLROnPlateau("val_accuracy", factor=args.lr_factor,
                                                patience=args.lr_patience, min_lr=args.min_lr,
                                                mode="max", verbose=1)
    if resume_state:
        truncate_log(os.path.join(log_dir, "log.csv"), initial_epoch)
        plateau.on_train_begin()
        plateau.wait = resume_state["plateau_wait"]
        plateau.best = resume_state["plateau_best"]
        plateau.cooldown_counter = resume_state["plateau_cooldown"]
        plateau.on_train_begin = lambda logs=None: None  # keep the restored state
    budget = make_budget_callback(args.max_minutes, args.max_cpu_minutes, args.batch_size,
                                  resume_state.get("time_used") if resume_state else None,
                                  args.epochs, args.cap_minutes,
                                  agree=cluster_agreement(strategy, args.cluster is not None))
    checkpointer = make_checkpoint_callback(out_dir, args.save_best_only, plateau, budget,
                                            keep_last=args.train_on_validation,
                                            saved=net, replicas=replicas)
    if resume_state:
        checkpointer.best = resume_state["best_val_accuracy"]
        checkpointer.best_name = resume_state["best_checkpoint"]
    schedule = plateau if args.lr_schedule == "plateau" else make_cosine_callback(args, budget)
    callbacks = [budget, make_eval_callback(val, labels, log_dir), schedule,
                 keras.callbacks.CSVLogger(os.path.join(log_dir, "log.csv"),
                                           append=bool(resume_state)),
                 keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0),
                 checkpointer]
    print(f"model {args.model}: {net.count_params():,} parameters; {steps} steps per epoch")
    scope = multi_worker_fit_scope(net, strategy) if args.cluster is not None \
        else contextlib.nullcontext()
    try:
        with scope:
            trainer.fit(train, epochs=args.epochs, initial_epoch=initial_epoch,
                    steps_per_epoch=steps, callbacks=callbacks, shuffle=False,
                    verbose=1 if sys.stdout.isatty() else 2)
    except tf.errors.OpError as e:
        if args.cluster is None:
            raise
        committed = read_committed_epoch(exp_dir)
        raise UserError(f"a worker failed or was lost mid-epoch ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:160]}); the last committed epoch is "
                        f"{committed} in {exp_dir}: start every worker again with --resume, "
                        "with as many workers as you like") from None
    last_epoch = trainer.history.epoch[-1] + 1 if trainer.history.epoch else initial_epoch
    print(f"stopped by {budget.stopped_by} after epoch {last_epoch} of {args.epochs}; "
          f"best val_accuracy {checkpointer.best:.4f}: "
          f"{os.path.join(exp_dir, checkpointer.best_name)}")
    return 0


def multi_worker_fit_scope(net, strategy):
    """Work around two Keras 3.15 faults with MultiWorkerMirroredStrategy; returns the scope
    to call fit in. (1) fit first builds a model that has a strategy from a batch reduced
    across the replicas, which fails for this strategy's batches: the model is built already,
    so Keras is told of no strategy and fit runs in the strategy's scope, where Keras finds it.
    (2) Keras reduces each step's metrics across workers along an axis 0 that scalars lack:
    train_step gives them one (a mean over it is the same mean)."""
    import tensorflow as tf

    net._distribute_strategy = None
    train_step = net.train_step

    def step_with_axis(data):
        return {name: tf.reshape(value, [1]) for name, value in train_step(data).items()}

    net.train_step = step_with_axis
    return strategy.scope()


def read_committed_epoch(exp_dir):
    """The epoch that exp_dir/state.json commits (0 when there is none)."""
    try:
        with open(os.path.join(exp_dir, "state.json"), encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


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
    with open(state_path, encoding="utf-8") as f:
        state = json.load(f)
    for key in ("resume_model", "resume_optimizer"):
        if key not in state or not os.path.exists(os.path.join(exp_dir, state[key])):
            raise UserError(f"{state_path} names a missing {key.replace('_', ' ')}: cannot resume")
    if tidy:
        remove_stale_resume_files(exp_dir, state)
    return state


def budget_spent(state, args):
    """A resumed run whose saved time use already passed this run's budget is finished."""
    used = (state or {}).get("time_used")
    return bool(used) and (budget_fraction(used, args.max_minutes, args.max_cpu_minutes) >= 1
                           or bool(args.cap_minutes and used["wall_seconds"]
                                   >= args.cap_minutes * 60))


def truncate_log(log_path, epochs):
    """Keep the CSV log's rows of committed epochs: a killed run may have logged one more."""
    if not os.path.exists(log_path):
        return
    with open(log_path, encoding="utf-8") as f:
        lines = f.readlines()
    atomic_write_text(log_path, "".join(lines[:1 + epochs]))


def save_run_files(exp_dir, args, labels):
    os.makedirs(exp_dir, exist_ok=True)
    atomic_write_text(os.path.join(exp_dir, "labels.txt"), "\n".join(labels) + "\n")
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "config")}
    atomic_write_text(os.path.join(exp_dir, "config.json"), json.dumps(config, indent=1))


def print_sets(processor):
    for which in ("training", "validation", "testing"):
        counts = processor.label_counts(which)
        speakers = len(processor.speakers(which))
        print(f"{which}: {processor.set_size(which)} clips, {speakers} speakers, "
              f"silence {counts[SILENCE_LABEL]}, unknown {counts[UNKNOWN_LABEL]}")


if __name__ == "__main__":
    run_cli(main)
