"""The lookalike words: each holds its command's sound inside more sound (by espeak-ng's
phonemes), the two sides share none, and a lookalike recipe learns the training side and
streams its threshold over the validation side."""

import json
import os
import re

import pytest

from kws import real
from kws.common import UserError
from kws.labels import COMPETITION_WORDS
from kws.synthetic.espeak import Espeak
from kws.synthetic.forking import run_in_child
from kws.synthetic.layout import STAMP_NAME
from kws.synthetic.words import LOOKALIKES, lookalike_words

HELD_OUT_SYLLABLES = ("snow", "boy", "jar", "vis", "view", "glass")


def _phonemes(words):
    engine = Espeak()
    engine.set_voice("en-us")
    return [engine.phonemes(w) for w in words]


def bare(phonemes):
    """Phonemes without stress or syllable marks; en-us 'on'/'off' (O2) as the GB vowel (0)."""
    return re.sub(r"[',#;\-2 ]", "", phonemes.replace("O2", "0"))


def test_each_lookalike_holds_its_command_with_more_sound_around_it():
    pytest.importorskip("espeakng_loader")
    words = [(command, w) for command, sides in LOOKALIKES.items() for side in sides
             for w in side]
    spoken = run_in_child(_phonemes, list(LOOKALIKES) + [w for _, w in words])
    of = dict(zip(list(LOOKALIKES) + [w for _, w in words], map(bare, spoken)))
    for command, word in words:
        assert of[command] in of[word] and of[command] != of[word], (command, word, of[word])


def test_the_lookalike_sides_share_no_word_and_name_no_command_or_held_out_phrase():
    assert set(LOOKALIKES) == set(COMPETITION_WORDS)
    training, validation = lookalike_words("training"), lookalike_words("validation")
    assert training and validation and not set(training) & set(validation)
    assert len(set(training)) == len(training) and len(set(validation)) == len(validation)
    for word in training + validation:
        assert word not in COMPETITION_WORDS
        assert not any(s in word for s in HELD_OUT_SYLLABLES), word


def test_a_lookalike_recipe_learns_the_training_side_and_streams_the_validation_side(
        tmp_path, monkeypatch):
    synthetic = tmp_path / "synthetic_lookalikes"
    for word in lookalike_words("training") + lookalike_words("validation"):
        for n in range(real.LOOKALIKE_VALIDATION_CLIPS + 2):
            path = synthetic / "train" / "audio" / word / f"s{n:02d}_nohash_0.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    resumed = []
    monkeypatch.setattr(real, "run_step", lambda title, cmd: resumed.append(cmd))
    real.stage_lookalikes("python", str(tmp_path / "run"), str(synthetic))
    assert len(resumed) == 1  # no stamp of a finished synthesis: it runs (and resumes)
    (synthetic / STAMP_NAME).write_text(json.dumps({"complete": True}))
    staged = real.stage_lookalikes("python", str(tmp_path / "run"), str(synthetic))
    assert len(resumed) == 1  # finished: not synthesised again
    counts = {which: {w: len(os.listdir(os.path.join(folder, w))) for w in os.listdir(folder)}
              for which, folder in staged.items()}
    assert counts["training"] == {w: real.LOOKALIKE_VALIDATION_CLIPS + 2
                                  for w in lookalike_words("training")}
    assert counts["validation"] == {w: real.LOOKALIKE_VALIDATION_CLIPS
                                    for w in lookalike_words("validation")}

    trained, streamed = {}, []
    data = {"train_only": ["train_a"], "data_dir": "dev", "noise": "noise",
            "lookalikes": staged}

    def train_and_score(py, name, data_args, *args, tag="", init=None):
        trained[name] = list(data_args["train_only"])
        return {"checkpoint": f"{name}.keras", "validation_accuracy": 0.9}

    def streaming_figures(*args, other_speech, **kwargs):
        streamed.append(other_speech["validation"])
        return {}

    monkeypatch.setattr(real, "train_and_score", train_and_score)
    monkeypatch.setattr(real, "freeze_and_score_edge", lambda *a: {})
    monkeypatch.setattr(real, "stage_set", lambda *a: ("validation", 2, 3))
    monkeypatch.setattr(real, "streaming_figures", streaming_figures)
    monkeypatch.setattr(real, "running_speech_rate", lambda *a: {})
    sets = {w: "f" for w in ("training", "validation", "testing")}
    staged_sets = {"v001": sets, "digits": sets, "other": sets, "running": sets}
    for name in ("teacher_nols", "teacher_nols_lookalikes"):
        results = {"models": {}, "minutes": {}}
        real.train_models("py", "shared", [name], data, "held_out", str(tmp_path), 0, None,
                          None, results)
        real.edge_figures("py", results, data, staged_sets, "held_out", str(tmp_path),
                          str(tmp_path / "tf"), 1, 1, name)
    assert trained == {"teacher_nols": ["train_a"],
                       "teacher_nols_lookalikes": ["train_a", staged["training"]]}
    assert streamed == [["f", "f"], ["f", "f", staged["validation"]]]


def train_recorded(monkeypatch, models):
    """real.train_models over models with training stubbed: (name, its training folders, the
    checkpoint it starts from) for each run in order, and the run's results."""
    trained = []

    def train_and_score(py, name, data_args, *args, tag="", init=None):
        trained.append((name, list(data_args["train_only"]), init))
        return {"checkpoint": f"ck/{name}/best.keras"}

    monkeypatch.setattr(real, "train_and_score", train_and_score)
    data = {"train_only": ["train_a"], "lookalikes": {"training": "look"}}
    results = {"models": {}, "minutes": {}}
    real.train_models("py", "shared", models, data, "held_out", "out", 0, 1, None, results)
    return trained, results


@pytest.mark.parametrize("cycle2, models", [
    ("teacher_nols_lookalikes_cycle2", ["teacher_nols_lookalikes_cycle2"]),
    ("teacher_nols_lookalikes_cycle2", ["teacher_nols_lookalikes_cycle2",
                                        "teacher_nols_lookalikes"]),
    ("teacher_lookalikes_cycle2", ["teacher_lookalikes_cycle2"])])
def test_a_second_cycle_trains_its_first_cycle_first_then_starts_from_its_checkpoint(
        cycle2, models, monkeypatch):
    # the unsmoothed second cycle differs from its first only in where it starts (the smoothed
    # one's config: test_real_split's variants)
    same_config = real.RECIPES[cycle2] == real.RECIPES[real.WARM_STARTS[cycle2]]
    assert same_config == (cycle2 == "teacher_nols_lookalikes_cycle2")
    trained, results = train_recorded(monkeypatch, models)
    # the first cycle once, on the same data (lookalikes too), the second from its checkpoint
    assert trained == [("teacher_nols_lookalikes", ["train_a", "look"], None),
                       (cycle2, ["train_a", "look"], "ck/teacher_nols_lookalikes/best.keras")]
    assert set(results["minutes"]) == {"teacher_nols_lookalikes", cycle2}


def test_a_third_cycle_trains_the_chain_it_starts_from_each_from_the_one_before(monkeypatch):
    trained, _ = train_recorded(monkeypatch, ["teacher_lookalikes_cycle3",
                                              "teacher_lookalikes_cycle2"])
    look = ["train_a", "look"]  # every cycle, the lookalikes
    chain = ["teacher_nols_lookalikes", "teacher_lookalikes_cycle2", "teacher_lookalikes_cycle3"]
    starts = [None] + [f"ck/{name}/best.keras" for name in chain[:-1]]
    assert trained == [(name, look, init) for name, init in zip(chain, starts)]
    assert real.RECIPES["teacher_lookalikes_cycle3"] == real.RECIPES["teacher_lookalikes_cycle2"]


@pytest.mark.parametrize("variant", real.LOOKALIKE_TEACHERS[1:])
def test_each_lookalike_variant_learns_the_lookalikes_as_the_plain_one_does(monkeypatch, variant):
    trained, _ = train_recorded(monkeypatch, [variant, "teacher"])
    assert trained == [("teacher", ["train_a"], None), (variant, ["train_a", "look"], None)]


def stub_training_steps(monkeypatch):
    """train_and_score's steps stubbed: returns the list its commands are appended to."""
    commands = []
    monkeypatch.setattr(real, "run_step", lambda title, cmd: commands.append(cmd))
    monkeypatch.setattr(real, "best_checkpoint", lambda d: d + "/best.keras")
    monkeypatch.setattr(real, "run_scored_step", lambda *a: {"accuracy": 1, "recall": {}})
    monkeypatch.setattr(real, "read_state", lambda d: {"best_val_accuracy": 0.9})
    monkeypatch.setattr(real, "training_record", lambda d: {})
    return commands


def test_a_warm_started_run_passes_its_starting_checkpoint_to_train_py(tmp_path, monkeypatch):
    commands = stub_training_steps(monkeypatch)
    data = {"train_only": [], "data_dir": "dev", "noise": "noise", "pack": "pack.zip"}
    entry = real.train_and_score("py", "teacher_nols_lookalikes_cycle2", data, "held_out",
                                 str(tmp_path), 0, 2, init="ck/first.keras")
    cmd = commands[0]
    assert cmd[cmd.index("--init_checkpoint") + 1] == "ck/first.keras"
    assert cmd[cmd.index("--exp_name") + 1] == "real_teacher_nols_lookalikes_cycle2_s2"
    assert entry["checkpoint"] == "checkpoints/real_teacher_nols_lookalikes_cycle2_s2/best.keras"


def test_the_distilled_cycle_learns_the_ensemble_from_its_first_cycles_checkpoint(monkeypatch):
    kd = "teacher_nols_lookalikes_kd"
    assert kd in real.DISTILLED_RECIPES and real.learns_lookalikes(kd)
    trained = []

    def train_and_score(py, name, data_args, held_out, out_dir, cap, seed, teachers=(), tag="",
                        init=None):
        trained.append((name, list(data_args["train_only"]), list(teachers), init))
        return {"checkpoint": f"ck/{name}/best.keras"}

    monkeypatch.setattr(real, "train_and_score", train_and_score)
    data = {"train_only": ["train_a"], "lookalikes": {"training": "look"}}
    results = {"models": {}, "minutes": {}}
    real.train_models("py", "shared", [kd], data, "held_out", "out", 0, 1, ["t0.keras", "t1.keras"],
                      results)
    # the first cycle learns no teacher; the second distils both, from the first's weights
    assert trained == [("teacher_nols_lookalikes", ["train_a", "look"], [], None),
                       (kd, ["train_a", "look"], ["t0.keras", "t1.keras"],
                        "ck/teacher_nols_lookalikes/best.keras")]
    with pytest.raises(UserError, match="none given"):  # never a plain run under its name
        real.train_models("py", "shared", [kd], data, "held_out", "out", 0, 1, None,
                          {"models": {}, "minutes": {}})


def test_a_distilled_run_passes_every_teacher_and_the_distillation_to_train_py(tmp_path,
                                                                              monkeypatch):
    commands = stub_training_steps(monkeypatch)
    data = {"train_only": [], "data_dir": "dev", "noise": "noise", "pack": "pack.zip"}
    entry = real.train_and_score("py", "teacher_nols_lookalikes_kd", data, "held_out",
                                 str(tmp_path), 0, 2, ["a.keras", "b.keras"], init="first.keras")
    cmd = commands[0]
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--teacher_checkpoint"] == [
        "a.keras", "b.keras"]
    assert cmd[cmd.index("--distill_weight") + 1] == "0.5"
    assert cmd[cmd.index("--exp_name") + 1] == "real_teacher_nols_lookalikes_kd_s2"
    assert entry["teachers"] == ["a.keras", "b.keras"]


def test_real_py_asks_the_distilled_cycle_for_its_teachers(tmp_path):
    import real as real_script
    with pytest.raises(UserError, match="distils from --teacher_checkpoint"):
        real_script.main(["--models", "teacher_nols_lookalikes_kd", "--out_dir", str(tmp_path)])
    teacher = tmp_path / "t.keras"
    teacher.write_bytes(b"")
    with pytest.raises(UserError, match="edge distils from one"):
        real_script.main(["--models", "edge", "--teacher_checkpoint", str(teacher),
                          "--teacher_checkpoint", str(teacher), "--out_dir", str(tmp_path)])
