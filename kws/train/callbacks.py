"""The Keras callbacks of a training run: one validation pass per epoch (with a confusion
matrix), the time budgets, the cosine learning rate, ReduceLROnPlateau as resumed, the weights'
moving average, and the atomic per-epoch checkpoints that commit each epoch for --resume."""

import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from kws.common import atomic_path, atomic_write_text
from kws.labels import COMPETITION_LABELS, competition_index
from kws.train.budget import budget_fraction, cosine_learning_rate, stop_reason
from kws.train.run_dir import remove_stale_resume_files, resume_files, save_optimizer


# ---- evaluation -------------------------------------------------------------------------------
def confusion(true, pred, n):
    return np.bincount(true * n + pred, minlength=n * n).reshape(n, n)


def make_eval_callback(val_data, labels, log_dir):
    """One pass over the validation set per epoch: val_loss, val_accuracy, the confusion matrix,
    and for all-words models the mean per-class accuracy over the 12 competition classes."""
    to12 = competition_index(labels)
    all_words = list(labels) != COMPETITION_LABELS

    class EvalCallback(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            # traced: an eager pass over the validation set took twice as long, every epoch
            self.forward = tf.function(lambda x: self.model(x, training=False),
                                       reduce_retracing=True)

        def on_epoch_end(self, epoch, logs=None):
            logits, truth = [], []
            for x, y in val_data:
                logits.append(self.forward(x).numpy())
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


# ---- budgets and learning rates ---------------------------------------------------------------
def make_budget_callback(minutes, cpu_minutes, batch_size, spent=None, epochs=0, cap_minutes=0,
                         agree=None):
    """Log training throughput; stop after the first epoch that ends past a time budget
    (wall clock, or this process's CPU time, which a busy machine does not eat into) or past
    the wall-clock cap. `stopped_by` says which budget ended the run ("epochs" when all ran).
    `spent` is what earlier, interrupted runs used: a resumed run finishes the same budget.
    `agree` (see kws.train.distributed.cluster_agreement) makes every worker read the same,
    largest time used."""

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


def make_cosine_callback(args, budget):
    """Set each epoch's learning rate from the progress through --epochs or the time budget,
    whichever is further along, so the decay completes even when time runs out first."""

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


def make_plateau_callback(args, resume_state=None):
    """ReduceLROnPlateau on val_accuracy; a resumed run carries on with its saved wait, best and
    cooldown (the checkpointer saves them with every epoch, whichever schedule runs)."""
    plateau = keras.callbacks.ReduceLROnPlateau("val_accuracy", factor=args.lr_factor,
                                                patience=args.lr_patience, min_lr=args.min_lr,
                                                mode="max", verbose=1)
    if resume_state:
        plateau.on_train_begin()
        plateau.wait = resume_state["plateau_wait"]
        plateau.best = resume_state["plateau_best"]
        plateau.cooldown_counter = resume_state["plateau_cooldown"]
        plateau.on_train_begin = lambda logs=None: None  # keep the restored state
    return plateau


# ---- weight averaging -------------------------------------------------------------------------
def make_ema_callback(resumed=False):
    """Swap the weights' moving average (the optimizer's use_ema) in at every epoch's end, so
    the callbacks after this one (validation, the checkpoints) see it, and back at the next
    epoch's start. A committed epoch is saved swapped (the model file holds the average, the
    optimizer's average slots the training weights), so a resumed run starts swapped.
    Keras' SwapEMAWeights, except that its last epoch does not overwrite the optimizer's copy of
    the training weights with the average: the resume files of a finished run stay exact, and
    a run extended with --resume --epochs carries on from its training weights."""

    class EpochAverage(keras.callbacks.SwapEMAWeights):
        def __init__(self):
            super().__init__(swap_on_epoch=True)
            self._ema_weights_in_model = resumed  # the swap state the base class keeps

        def on_epoch_end(self, epoch, logs=None):
            if not self._ema_weights_in_model:
                self._swap_variables()
                self._ema_weights_in_model = True

    return EpochAverage()


# ---- checkpoints ------------------------------------------------------------------------------
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
            self.commit(epoch + 1, name, target)

        def commit(self, epochs_done, name, target):
            """The resume files, last.keras, then state.json naming them."""
            model_file, optimizer_file = resume_files(epochs_done)
            with atomic_path(os.path.join(exp_dir, model_file)) as tmp:
                target.save(tmp)
            save_optimizer(self.model, os.path.join(exp_dir, optimizer_file))
            with atomic_path(os.path.join(exp_dir, "last.keras")) as tmp:
                shutil.copyfile(os.path.join(exp_dir, model_file), tmp)
            state = {"epoch": epochs_done, "best_val_accuracy": self.best,
                     "learning_rate": float(self.model.optimizer.learning_rate.numpy()),
                     "plateau_wait": plateau.wait, "plateau_cooldown": plateau.cooldown_counter,
                     "plateau_best": plateau.best and float(plateau.best), "last_checkpoint": name,
                     "best_checkpoint": self.best_name, "resume_model": model_file,
                     "resume_optimizer": optimizer_file, "time_used": budget.used(),
                     "stopped_by": budget.stopped_by, "replicas": replicas}
            atomic_write_text(os.path.join(exp_dir, "state.json"), json.dumps(state, indent=1))
            remove_stale_resume_files(exp_dir, state)

    return Checkpointer()
