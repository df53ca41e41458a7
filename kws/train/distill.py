"""Knowledge distillation: the loss that blends hard labels with a teacher's soft targets, the
accuracy on the hard labels, teachers as a probabilities file or as frozen checkpoints (an
ensemble's mean), and the teachers' targets put into the training batches.

y_true is [B, 1 + classes] throughout: the label, then the teacher's probabilities (or -1s:
no teacher for that example)."""

import sys

import numpy as np
import tensorflow as tf

from kws.checkpoint import load_checkpoint
from kws.common import UserError, require_file
from kws.layers import pack_trainer
from kws.probs import read_probs_csv


def make_loss(num_classes, label_smoothing, temperature, distill_weight):
    """Cross-entropy on hard labels, blended with a distillation term where a soft target exists.

    The soft term is Hinton's T^2 * CE(softmax(log p_teacher / T), softmax(z / T)).
    """

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
    hard = tf.cast(y_true[:, 0], tf.int64)
    return tf.cast(tf.equal(tf.argmax(y_pred, axis=1), hard), tf.float32)


# ---- a teacher's probabilities file -----------------------------------------------------------
def load_teacher_probs(path, labels):
    """A probabilities CSV (fname,<label>...) as {fname: probabilities in the model's order}."""
    require_file(path, "teacher probabilities")
    fnames, file_labels, table = read_probs_csv(path)  # one-line errors for a bad file
    missing = [label for label in labels if label not in file_labels]
    if missing:
        raise UserError(f"{path}: needs columns fname and {missing}")
    fnames = [normalise_fname(f) for f in fnames]
    if len(set(fnames)) != len(fnames):
        raise UserError(f"{path}: repeated fnames")
    probs = table[:, [file_labels.index(label) for label in labels]].astype(np.float32)
    probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-9)
    return dict(zip(fnames, probs))


def normalise_fname(fname):
    """`./yes\\X.wav` -> `yes/X.wav`: the form kws.data names clips by."""
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


# ---- teacher checkpoints ----------------------------------------------------------------------
def load_teachers(checkpoints, labels):
    """The teacher models, frozen, after checking they share the student's labels."""
    teachers = []
    for path in checkpoints:
        teacher, teacher_labels = load_checkpoint(path)
        if list(teacher_labels) != list(labels):
            raise UserError(f"teacher {path} has labels {teacher_labels}, the student {labels}")
        teacher.trainable = False
        teachers.append(teacher)
    return teachers


def pack_teacher(teacher):
    """A teacher for a pack student: its kws.layers.pack_trainer, which takes the mixed batches
    ((audio, image features, from_audio)), so it labels audio clips and pack images alike."""
    try:
        return pack_trainer(teacher)
    except UserError:
        raise UserError(f"a teacher of a --pack student needs the pack front end too; "
                        f"{teacher.name} has none") from None


def teacher_targets(dataset, teachers):
    """Replace the soft targets of every batch with the mean softmax of teacher models."""

    def add(x, y):
        probs = tf.add_n([tf.nn.softmax(t(x, training=False)) for t in teachers]) / len(teachers)
        return x, tf.concat([y[:, :1], probs], axis=1)

    return dataset.map(add)
