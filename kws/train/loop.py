"""The training run: TensorFlow set up for --strategy, the model built (or resumed) and
compiled, its training and validation batches (with soft targets, teachers and the spectrogram
pack), the callbacks, and Keras' fit. train.py calls train_model(args, plan_run(args))."""

import contextlib
import math
import os
import sys
import zipfile

import keras
import tensorflow as tf

from kws.augment import Augmentation
from kws.checkpoint import load_error_message
from kws.common import UserError, require_file
from kws.folders import speakers_in
from kws.labels import SILENCE_LABEL, UNKNOWN_LABEL
from kws.layers import PackFeatures, front_end_layer, pack_trainer
from kws.pack import read_pack
from kws.pack_data import mix_with_pack
from kws.train.budget import budget_spent
from kws.train.callbacks import (
    make_budget_callback,
    make_checkpoint_callback,
    make_cosine_callback,
    make_ema_callback,
    make_eval_callback,
    make_plateau_callback,
)
from kws.train.cluster import worker_dirs
from kws.train.distill import (
    hard_label_accuracy,
    load_teacher_probs,
    load_teachers,
    make_loss,
    pack_teacher,
    print_soft_target_report,
    teacher_targets,
)
from kws.train.distributed import (
    cluster_agreement,
    distributed_training_data,
    make_strategy,
    multi_worker_fit_scope,
    synchronise_batch_norm,
)
from kws.train.run_dir import (
    read_committed_epoch,
    restore_optimizer,
    save_run_files,
    truncate_log,
)
from kws.zoo import build_model


def train_model(args, plan):
    """Train as the checked flags say, from a kws.train.plan.RunPlan; returns the exit code."""
    strategy = configure_tensorflow(args)
    with worker_dirs(plan.exp_dir, plan.log_dir, plan.is_chief) as (out_dir, out_log_dir):
        return run_training(args, plan, strategy, out_dir, out_log_dir)


def configure_tensorflow(args):
    """Threads, seeds, determinism, and the --strategy (made before any device starts)."""
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    strategy = make_strategy(args)
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    return strategy


def run_training(args, plan, strategy, out_dir, log_dir):
    """out_dir, log_dir: where this process writes (see kws.train.cluster.worker_dirs)."""
    replicas = strategy.num_replicas_in_sync
    if args.batch_size % replicas:
        raise UserError(f"--batch_size {args.batch_size} is the global batch: it must be a "
                        f"multiple of the {replicas} replicas")
    os.makedirs(log_dir, exist_ok=True)
    labels = plan.processor.words_list
    save_run_files(out_dir, args, labels)
    print_sets(plan.processor)
    scale_learning_rate(args, replicas)
    initial_epoch = plan.resume_state["epoch"] if plan.resume_state else 0
    if initial_epoch >= args.epochs or budget_spent(plan.resume_state, args):
        print(f"{plan.exp_dir}: already trained for {initial_epoch} epochs, within its budget")
        return 0
    train, val, steps, teachers = make_datasets(args, plan.processor, strategy, initial_epoch,
                                                labels)
    with strategy.scope():
        net, trainer = build_and_compile(args, len(labels), plan.exp_dir, plan.resume_state,
                                         replicas)
    if args.pack:
        train, val, steps = with_pack(args, plan.processor, train, val, net, steps)
        if teachers:
            train = teacher_targets(train, [pack_teacher(t) for t in teachers])
    callbacks, budget, checkpointer = make_callbacks(args, plan.resume_state, strategy, net, val,
                                                     labels, out_dir, log_dir, replicas)
    print(f"model {args.model}: {net.count_params():,} parameters; {steps} steps per epoch")
    fit(args, plan.exp_dir, trainer, net, strategy, train,
        dict(epochs=args.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
             callbacks=callbacks))
    last_epoch = trainer.history.epoch[-1] + 1 if trainer.history.epoch else initial_epoch
    print(f"stopped by {budget.stopped_by} after epoch {last_epoch} of {args.epochs}; "
          f"best val_accuracy {checkpointer.best:.4f}: "
          f"{os.path.join(plan.exp_dir, checkpointer.best_name)}")
    return 0


def print_sets(processor):
    for which in ("training", "validation", "testing"):
        counts = processor.label_counts(which)
        speakers = len(processor.speakers(which))
        print(f"{which}: {processor.set_size(which)} clips, {speakers} speakers, "
              f"silence {counts[SILENCE_LABEL]}, unknown {counts[UNKNOWN_LABEL]}")


def scale_learning_rate(args, replicas):
    """--lr_scaling linear: the rate times the replicas; say how a distributed run splits."""
    if args.lr_scaling == "linear":
        args.learning_rate *= replicas
    if args.strategy != "default":
        print(f"{args.strategy}: {replicas} replicas"
              + (f" over {args.cluster['workers']} workers, this one "
                 f"{args.cluster['task_type']} {args.cluster['task_index']}"
                 if args.cluster else "")
              + f"; global batch {args.batch_size} ({args.batch_size / replicas:g} a replica), "
              f"learning rate {args.learning_rate:g}")


# ---- data -------------------------------------------------------------------------------------
def make_datasets(args, processor, strategy, initial_epoch, labels):
    """(training batches, validation batches, steps per epoch, teacher models): the training
    batches carry the soft targets of --teacher_probs or of the teachers (a pack model's
    teachers label the mixed batches later, after with_pack)."""
    soft = load_teacher_probs(args.teacher_probs, labels) if args.teacher_probs else None
    steps = args.steps_per_epoch or processor.steps_per_epoch(args.batch_size)
    teachers = load_teachers(args.teacher_checkpoint, labels) if args.teacher_checkpoint else []
    augmentation = Augmentation.from_dict(vars(args))

    def training_data(shard=None):
        ds = processor.dataset("training", args.batch_size, augmentation, seed=args.seed,
                               initial_epoch=initial_epoch, epochs=args.epochs,
                               steps_per_epoch=steps,
                               soft_targets=soft if soft is not None else {}, replicas=shard)
        return teacher_targets(ds, teachers) if teachers and not args.pack else ds

    train = distributed_training_data(strategy, training_data) if args.strategy != "default" \
        else training_data()
    if soft is not None:
        print_soft_target_report(processor.soft_target_report, args.teacher_probs)
    return train, processor.dataset("validation", args.batch_size), steps, teachers


def with_pack(args, processor, train, val, net, audio_steps):
    """(training batches for kws.layers.pack_trainer: audio clips mixed with pack images,
    validation batches, steps per epoch)."""
    train, val, report = mix_with_pack(
        processor, train, val, front_end_layer(net, PackFeatures),
        read_pack(args.pack, args.pack_cache_dir), args.pack_frequency, args.batch_size,
        args.seed, speakers_in(args.pack_held_out_dir), args.pack_silence,
        shift_frames=round(args.time_shift_ms / 10))  # the pack's frames are 10 ms apart
    print(f"pack: {report['images']:,} images train ({report['held_out_speakers']} held-out "
          "speakers left out)")
    return train, val, math.ceil(audio_steps / (1 - args.pack_frequency))


# ---- the model --------------------------------------------------------------------------------
def make_optimizer(args):
    """The optimizer of --optimizer; with --ema_momentum it also keeps the weights' moving
    average (Keras' use_ema, swapped in for evaluation by kws.train.callbacks.make_ema_callback)."""
    common = dict(weight_decay=args.weight_decay or None)
    if args.ema_momentum:
        common.update(use_ema=True, ema_momentum=args.ema_momentum)
    if args.optimizer == "sgd":
        return keras.optimizers.SGD(args.learning_rate, momentum=args.momentum, nesterov=True,
                                    **common)
    if args.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(args.learning_rate, momentum=args.momentum, **common)
    return keras.optimizers.Adam(args.learning_rate, **common)


def load_init_weights(net, path):
    """net's weights from path, a checkpoint of the same model and labels (a warm start): one
    of another model, width or vocabulary is an error, never a silent partial load that would
    train from fresh weights where the run means to continue."""
    require_file(path, "init checkpoint")
    try:
        net.load_weights(path)
    except ValueError as e:
        reason = str(e).strip().splitlines()[0]
        raise UserError(f"--init_checkpoint {path} does not fit this model ({reason})") from e
    except (zipfile.BadZipFile, OSError, KeyError) as e:  # not a checkpoint, or a damaged one
        raise UserError(f"--init_checkpoint: {load_error_message(path, e)}") from None


def build_and_compile(args, num_classes, exp_dir, resume_state, replicas=1):
    """(the model, what trains: the model or its pack_trainer), compiled; a resumed run's
    model, optimizer slots and learning rate come from its resume files."""
    loss = make_loss(num_classes, args.label_smoothing, args.distill_temperature,
                     args.distill_weight)
    metric = keras.metrics.MeanMetricWrapper(hard_label_accuracy, name="accuracy")
    if resume_state:
        net = keras.models.load_model(os.path.join(exp_dir, resume_state["resume_model"]),
                                      compile=False, safe_mode=True)
    else:
        net = build_model(args.model, num_classes, **args.model_options)
        if args.init_checkpoint:
            load_init_weights(net, args.init_checkpoint)
    if replicas > 1:
        synchronise_batch_norm(net)
    trainer = pack_trainer(net) if args.pack else net
    trainer.compile(optimizer=make_optimizer(args), loss=loss, metrics=[metric])
    if resume_state:
        restore_optimizer(trainer, os.path.join(exp_dir, resume_state["resume_optimizer"]))
        trainer.optimizer.learning_rate.assign(resume_state["learning_rate"])
    return net, trainer


# ---- callbacks and fit ------------------------------------------------------------------------
def make_callbacks(args, resume_state, strategy, net, val, labels, out_dir, log_dir, replicas):
    """(the callbacks in order, the budget, the checkpointer), carried on from resume_state."""
    plateau = make_plateau_callback(args, resume_state)
    if resume_state:
        truncate_log(os.path.join(log_dir, "log.csv"), resume_state["epoch"])
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
    averaging = [make_ema_callback(resumed=bool(resume_state))] if args.ema_momentum else []
    callbacks = [budget, *averaging, make_eval_callback(val, labels, log_dir), schedule,
                 keras.callbacks.CSVLogger(os.path.join(log_dir, "log.csv"),
                                           append=bool(resume_state)),
                 keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0),
                 checkpointer]
    return callbacks, budget, checkpointer


def fit(args, exp_dir, trainer, net, strategy, train, fit_options):
    """trainer.fit(train, **fit_options); a multi-worker run that loses a worker mid-epoch
    ends with a one-line error naming the epoch to resume from."""
    scope = multi_worker_fit_scope(net, strategy) if args.cluster is not None \
        else contextlib.nullcontext()
    try:
        with scope:
            trainer.fit(train, shuffle=False, verbose=1 if sys.stdout.isatty() else 2,
                        **fit_options)
    except tf.errors.OpError as e:
        if args.cluster is None:
            raise
        committed = read_committed_epoch(exp_dir)
        raise UserError(f"a worker failed or was lost mid-epoch ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:160]}); the last committed epoch is "
                        f"{committed} in {exp_dir}: start every worker again with --resume, "
                        "with as many workers as you like") from None
