"""Distillation targets: which clip each teacher row names; the teacher changes the loss."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_speech_commands, tone

from kws.audio import write_wav
from kws.common import UserError
from kws.data import PSEUDO_SOURCES_FILE, AudioProcessor
from kws.pseudo import write_dataset

REPO = Path(__file__).resolve().parents[1]
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def twins(tmp_path):
    """Speech Commands data with one file name, X.wav, in both yes/ and no/."""
    root = make_speech_commands(tmp_path / "sc", WORDS, [f"{i:08x}" for i in range(6)])
    write_wav(root / "yes" / "X.wav", tone(300))
    write_wav(root / "no" / "X.wav", tone(450))
    return root


def targets(processor, soft):
    """{clip path: soft target row} as the training batches will carry them."""
    processor._decode_all()
    table = processor._soft_table(soft)
    return {path: table[row] for path, row in processor._row.items()}


def one_hot(i, n=12):
    return np.eye(n, dtype=np.float32)[i]


def test_same_basename_in_two_folders_keeps_each_clips_own_target(tmp_path):
    root = twins(tmp_path)
    processor = AudioProcessor(str(root), validation_percentage=0, testing_percentage=0)
    got = targets(processor, {"yes/X.wav": one_hot(2), "no/X.wav": one_hot(3)})
    np.testing.assert_array_equal(got[str(root / "yes" / "X.wav")], one_hot(2))
    np.testing.assert_array_equal(got[str(root / "no" / "X.wav")], one_hot(3))
    assert sum(bool((row >= 0).all()) for row in got.values()) == 2
    report = processor.soft_target_report
    assert report["rows_used"] == 2 and report["training_clips_with_targets"] == 2


def test_a_bare_name_that_names_two_clips_is_refused(tmp_path):
    processor = AudioProcessor(str(twins(tmp_path)), validation_percentage=0,
                               testing_percentage=0)
    with pytest.raises(UserError, match="'X.wav' names 2 clips"):
        targets(processor, {"X.wav": one_hot(2)})


def test_a_bare_name_matches_where_it_is_unique(tmp_path):
    root = twins(tmp_path)
    write_wav(root / "yes" / "only.wav", tone(600))
    processor = AudioProcessor(str(root), validation_percentage=0, testing_percentage=0)
    got = targets(processor, {"only.wav": one_hot(5)})
    np.testing.assert_array_equal(got[str(root / "yes" / "only.wav")], one_hot(5))
    assert processor.soft_target_report["rows_used"] == 1


def test_pseudo_pool_clips_match_the_fnames_they_were_cut_from(tmp_path):
    root = make_speech_commands(tmp_path / "sc", WORDS, [f"{i:08x}" for i in range(6)])
    pool = tmp_path / "pool"
    write_wav(pool / "yes" / "sub__clip_1.wav", tone(300))
    write_wav(pool / "no" / "clip_2.wav", tone(450))
    (pool / PSEUDO_SOURCES_FILE).write_text("file,fname\nyes/sub__clip_1.wav,sub/clip_1.wav\n"
                                            "no/clip_2.wav,clip_2.wav\n")
    processor = AudioProcessor(str(root), pseudo_dirs=[str(pool)], pseudo_frequency=0.5)
    got = targets(processor, {"sub/clip_1.wav": one_hot(4), "clip_2.wav": one_hot(6)})
    np.testing.assert_array_equal(got[str(pool / "yes" / "sub__clip_1.wav")], one_hot(4))
    np.testing.assert_array_equal(got[str(pool / "no" / "clip_2.wav")], one_hot(6))
    assert processor.soft_target_report["pseudo_clips_with_targets"] == 2


def test_create_pseudo_records_where_each_clip_came_from(tmp_path):
    test = tmp_path / "test"
    write_wav(test / "a" / "b.wav", tone(300))
    write_wav(test / "c.wav", tone(450))
    counts = write_dataset(str(tmp_path / "out"), str(test), ["a/b.wav", "c.wav"],
                                  ["yes", "no"])
    assert counts == {"yes": 1, "no": 1}
    with open(tmp_path / "out" / PSEUDO_SOURCES_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["file"], r["fname"]) for r in rows) == [("no/c.wav", "c.wav"),
                                                           ("yes/a__b.wav", "a/b.wav")]


def test_the_teacher_changes_the_loss_of_the_batches_it_names(tmp_path):
    """The soft targets reach the batches, and the loss on them is not the hard-label loss."""
    import tensorflow as tf

    from kws.train.distill import make_loss

    root = make_speech_commands(tmp_path / "sc", WORDS, [f"{i:08x}" for i in range(6)])
    processor = AudioProcessor(str(root), validation_percentage=0, testing_percentage=0,
                               silence_percentage=0, unknown_percentage=0)
    labels = processor.words_list
    # a teacher that disagrees with every label: all its mass on _unknown_
    soft = {it["key"]: one_hot(labels.index("_unknown_")) for it in
            processor.data_index["training"]}
    ds = processor.dataset("training", batch_size=8, seed=1, epochs=1, soft_targets=soft)
    clips, y = next(iter(ds))
    y = y.numpy()
    assert y.shape == (8, 13)
    np.testing.assert_array_equal(y[:, 1:], np.tile(one_hot(1), (8, 1)))  # the teacher's rows
    logits = tf.random.stateless_normal((8, 12), [1, 2])
    hard = make_loss(12, 0.0, 1.0, 0.0)(y, logits).numpy()
    blended = make_loss(12, 0.0, 1.0, 0.9)(y, logits).numpy()
    no_teacher = np.concatenate([y[:, :1], -np.ones((8, 12), np.float32)], axis=1)
    assert np.allclose(make_loss(12, 0.0, 1.0, 0.9)(no_teacher, logits).numpy(), hard)
    assert np.abs(blended - hard).min() > 1e-3


def test_train_reports_how_many_clips_got_soft_targets(tmp_path):
    root = twins(tmp_path)
    make_speech_commands(root, WORDS, [f"{i:08x}" for i in range(6, 12)], noise=False)
    probs = tmp_path / "teacher.probs.csv"
    labels = ["_silence_", "_unknown_"] + WORDS
    rows = [["yes/X.wav", one_hot(2)], ["no/X.wav", one_hot(3)], ["nowhere/Y.wav", one_hot(3)]]
    with open(probs, "w", newline="") as f:
        csv.writer(f).writerows([["fname"] + labels] + [[n] + list(p) for n, p in rows])
    cmd = [sys.executable, "train.py", "--config", "experiments/smoke.json", "--data_dir",
           str(root), "--checkpoint_dir", str(tmp_path / "ck"), "--log_dir", str(tmp_path / "l"),
           "--teacher_probs", str(probs), "--epochs", "1", "--steps_per_epoch", "1"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "soft targets from" in done.stdout and "2 of 3 teacher rows used" in done.stdout
    probs.write_text(probs.read_text().replace("yes/X.wav", "X.wav"))
    done = subprocess.run(cmd + ["--exp_name", "again"], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert "names 2 clips" in done.stderr.strip().splitlines()[-1]


def test_ambiguity_is_judged_on_every_clip_not_only_the_sampled_ones(tmp_path):
    """`X.wav` in yes/ and in an unknown word's folder is ambiguous even when the unknown clip
    was not sampled into any set this time."""
    root = make_speech_commands(tmp_path / "sc", WORDS, [f"{i:08x}" for i in range(6)])
    write_wav(root / "yes" / "X.wav", tone(300))
    write_wav(root / "bed" / "X.wav", tone(450))
    processor = AudioProcessor(str(root), validation_percentage=0, testing_percentage=0,
                               unknown_percentage=0)
    assert not any((it["file"] or "").endswith("bed/X.wav")
                   for it in processor.data_index["training"])
    with pytest.raises(UserError, match="'X.wav' names 2 clips"):
        targets(processor, {"X.wav": one_hot(2)})
