"""real.py's honest split: held-out silence from noise training never hears, calibration from
training speakers only, on small generated data."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_speech_commands

from kws import real
from kws.audio import read_wav, write_wav
from kws.common import REPO
from kws.data import AudioProcessor
from kws.folders import speaker_id, which_set
from kws.recipe import stage_set

RATE = 16000
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def noise_folder(tmp_path):
    rng = np.random.default_rng(7)
    recording = rng.normal(0, 0.1, 10 * RATE).astype(np.float32)
    write_wav(tmp_path / "noise" / "hum.wav", recording)
    return tmp_path / "noise", recording


def test_locate_crop_finds_a_scaled_crop_and_nothing_else(tmp_path):
    folder, recording = noise_folder(tmp_path)
    spectra = real.noise_spectra(str(folder))
    recording = read_wav(folder / "hum.wav", num_samples=None)  # as the reader rounds it
    assert real.locate_crop(recording[12345:12345 + RATE] * 0.3, spectra) == ("hum.wav", 12345)
    other = np.random.default_rng(8).normal(0, 0.1, RATE)
    assert real.locate_crop(other, spectra) is None
    assert real.locate_crop(np.zeros(RATE), spectra) is None


def test_held_out_silence_comes_only_from_noise_training_never_uses(tmp_path):
    folder, recording = noise_folder(tmp_path)
    dev = make_speech_commands(tmp_path / "dev", WORDS, [f"{i:08x}" for i in range(40)],
                               noise=False)
    cut = int(len(recording) * 0.8)
    starts = {f"{i}.wav": s for i, s in enumerate(range(0, len(recording) - RATE, RATE // 2))}
    for name, start in starts.items():
        write_wav(dev / "_silence_" / name, recording[start:start + RATE] * 0.5)
    rng = np.random.default_rng(9)
    unknown_source = [f"u{i}.wav" for i in range(40)]
    for name in unknown_source:
        write_wav(dev / "_silence_" / name, rng.normal(0, 0.05, RATE).astype(np.float32))

    staged, summary = real.stage_dev_split(str(dev), str(folder), str(tmp_path / "staged"))
    processor = AudioProcessor(staged, silence_percentage=0, unknown_percentage=-1)
    held_out = {it["file"].rsplit("/", 1)[-1]: it for it in processor.data_index["testing"]}
    trained = {it["file"].rsplit("/", 1)[-1] for which in ("training", "validation")
               for it in processor.data_index[which]}
    for name, start in starts.items():
        assert (name in held_out) == (start >= cut), (name, start)
        assert (name in trained) == (start + RATE <= cut)  # one that straddles the cut: unused
    # clips of unknown source are held out by the hash, and otherwise never used
    for name in unknown_source:
        expect = which_set(name, real.VALIDATION_PERCENT, real.TESTING_PERCENT, real.SPLIT_SALT)
        assert (name in held_out) == (expect == "testing")
        assert name not in trained
    # speakers: the salted hash, held out whole
    speakers = {speaker_id(f) for f in held_out if "_nohash_" in f}
    assert speakers and speakers.isdisjoint({speaker_id(f) for f in trained})
    assert all(which_set(f"{s}_nohash_0.wav", real.VALIDATION_PERCENT, real.TESTING_PERCENT,
                         real.SPLIT_SALT) == "testing" for s in speakers)
    assert json.loads((tmp_path / "staged" / "split.json").read_text())["counts"]

    calibration, n_speakers, _ = stage_set(staged, "training", str(tmp_path / "calib"))
    calib = AudioProcessor(calibration, silence_percentage=0, unknown_percentage=-1,
                           validation_percentage=0, testing_percentage=0)
    names = {it["file"].rsplit("/", 1)[-1] for it in calib.data_index["training"]}
    assert n_speakers and names and names.isdisjoint(held_out)


def test_v001_and_digit_speakers_split_so_stream_speakers_never_train(tmp_path):
    shared = tmp_path / "shared"
    speakers = [f"{i:08x}" for i in range(60)]
    for k, spk in enumerate(speakers):
        write_wav(shared / "speech_commands_v0.01_sample" / ["yes", "tree"][k % 2] /
                  f"{spk}_nohash_0.wav", np.zeros(RATE, np.float32))
    for name in ("lucas", "theo", "george"):
        for digit in range(3):
            write_wav(shared / "free_spoken_digits" / "recordings" / f"{digit}_{name}_0.wav",
                      np.zeros(4000, np.float32))
    v001 = real.stage_v001(str(shared), str(tmp_path / "v001"))
    digits = real.stage_digits(str(shared), str(tmp_path / "digits"))
    seen = {}
    for which, folder in v001.items():
        for path in sorted(Path(folder).rglob("*.wav")):
            assert which_set(path.name, real.VALIDATION_PERCENT, real.TESTING_PERCENT,
                             real.SPLIT_SALT) == which
            seen.setdefault(which, set()).add(speaker_id(path.name))
    assert set(seen) == {"training", "validation", "testing"}
    assert sum(len(s) for s in seen.values()) == len(speakers)
    for which, names in {"training": {"george"}, "validation": {"lucas"},
                         "testing": {"theo"}}.items():
        found = {p.name.split("_")[0] for p in (tmp_path / "digits" / which).rglob("*.wav")}
        assert found == names and digits[which].endswith(which)
    assert {p.parent.name for p in (tmp_path / "digits").rglob("*.wav")} == {"zero", "one", "two"}
    real.stage_digits(str(shared), str(tmp_path / "digits"))  # staging again starts afresh


def test_only_the_student_learns_the_hard_negatives_its_teacher_mined(tmp_path, monkeypatch):
    trained, mined_with = {}, []
    data = {"train_only": ["train_a"], "data_dir": "dev", "noise": "noise"}

    def train_and_score(py, name, data_args, *args, tag="", init=None):
        trained[name] = (list(data_args["train_only"]), args[-1])
        return {"checkpoint": f"{name}.keras"}

    def mine(py, shared, teacher, out_dir):
        mined_with.append((shared, teacher))
        return {"windows": 3}, "mined_dir"

    monkeypatch.setattr(real, "stage_inputs", lambda *a: (dict(data), {}))
    monkeypatch.setattr(real, "stage_set", lambda *a: ("held_out", 2, 3))
    monkeypatch.setattr(real, "train_and_score", train_and_score)
    monkeypatch.setattr(real, "mine_hard_negatives", mine)
    monkeypatch.setattr(real, "edge_figures", lambda *a: None)
    monkeypatch.setattr(real, "print_summary", lambda *a: None)
    results = real.run_recipe("shared", str(tmp_path), ["edge", "teacher"], ship_model=False)
    assert trained == {"teacher": (["train_a"], ()),
                       "edge": (["train_a", "mined_dir"], ["teacher.keras"])}
    assert mined_with == [("shared", "teacher.keras")] and results["hard_negatives"] == {
        "windows": 3}
    trained.clear()
    real.run_recipe("shared", str(tmp_path), ["edge"], ship_model=False)
    assert trained == {"edge": (["train_a"], [])} and len(mined_with) == 1
    results = real.run_recipe("shared", str(tmp_path), ["edge"], ship_model=False,
                              teacher_checkpoint=["kept.keras"])  # another seed's teacher
    assert trained == {"edge": (["train_a", "mined_dir"], ["kept.keras"])}
    assert mined_with[-1] == ("shared", "kept.keras")
    assert results["teacher_checkpoint"] == "kept.keras"


def stub_recipe_steps(monkeypatch):
    """run_recipe with every step stubbed; returns (models trained per run, model frozen per
    run ("" for none), ship commands)."""
    trained, frozen, shipped = [], [], []
    monkeypatch.setattr(real, "stage_inputs", lambda *a: ({"data_dir": "d", "train_only": []}, {}))
    monkeypatch.setattr(real, "stage_set", lambda *a: ("held_out", 2, 3))
    monkeypatch.setattr(real, "train_models", lambda py, shared, models, *a: (
        trained.append(list(models)), frozen.append("")))
    monkeypatch.setattr(real, "edge_figures", lambda *a: frozen.__setitem__(-1, a[-1]))
    monkeypatch.setattr(real, "print_summary", lambda *a: None)
    monkeypatch.setattr(real, "ship", lambda *a, **k: shipped.append(k["command"]) or (1, ""))
    return trained, frozen, shipped


def test_the_frozen_model_is_the_one_scored_streamed_and_shipped(tmp_path, monkeypatch):
    _, frozen, shipped = stub_recipe_steps(monkeypatch)
    real.run_recipe("shared", str(tmp_path), ["teacher"], frozen="teacher", command="c")
    real.run_recipe("shared", str(tmp_path), ["seed195"], command="d")  # no edge: nothing
    assert frozen == ["teacher", ""] and shipped == ["c"]


def test_make_real_trains_and_freezes_the_teacher_unless_an_edge_model_trains(tmp_path,
                                                                              monkeypatch):
    import real as real_script

    trained, frozen, _ = stub_recipe_steps(monkeypatch)
    pack_audio, train_models = [], real.train_models
    monkeypatch.setattr(real, "train_models",
                        lambda *a: (pack_audio.append(a[-1]), train_models(*a)))
    out = ["--out_dir", str(tmp_path), "--no-ship"]
    real_script.main(out)  # make real
    real_script.main(out + ["--models", "teacher,edge"])  # distillation: the student
    real_script.main(out + ["--models", "seed195", "--pack_audio", "0"])
    real_script.main(out + ["--models", "teacher,edge", "--frozen", "teacher"])
    assert list(zip(trained, frozen)) == [(["teacher", "seed195_cosine14"], "teacher"),
                                          (["teacher", "edge"], "edge"), (["seed195"], ""),
                                          (["teacher", "edge"], "teacher")]
    assert pack_audio == [600, 600, 0, 600]  # make real's seed195 hears the rendered pack


def test_every_recipe_config_reads_as_train_flags(tmp_path):
    from train import parse_args

    for name, config in real.RECIPES.items():
        args = parse_args(["--config", str(Path(REPO, config)), "--data_dir", str(tmp_path)])
        assert args.epochs >= 1 and args.model, name


@pytest.mark.parametrize("base, variant, change", [
    ("teacher", "teacher_long", {"epochs": 44}),
    ("teacher", "teacher_ema", {"ema_momentum": 0.999}),
    ("teacher", "teacher_nospec", {"model_options": {"spec_augment": False, "width": 3.0,
                                                     "features": "pack", "time_pool": 2}}),
    ("teacher", "teacher_wide", {"model_options": {"spec_augment": True, "width": 3.5,
                                                   "features": "pack", "time_pool": 2}}),
    ("teacher", "teacher_nols", {"label_smoothing": 0.0}),
    # the smoothed second cycle differs from the first cycle it starts from in smoothing alone
    ("teacher_nols_lookalikes", "teacher_lookalikes_cycle2", {"label_smoothing": 0.05}),
    ("teacher_nols_lookalikes", "teacher_nols_lookalikes_warp",
     {"model_options": {"spec_augment": {"freq_warp": 0.1}, "width": 3.0, "features": "pack",
                        "time_pool": 2}}),
    ("teacher_nols_lookalikes", "teacher_nols_lookalikes_wide",
     {"model_options": {"spec_augment": True, "width": 3.5, "features": "pack", "time_pool": 2}}),
    ("teacher_nols_lookalikes_wide", "teacher_lookalikes_wide_cycle2", {"label_smoothing": 0.05}),
    ("seed195", "seed195_cosine", {"lr_schedule": "cosine"}),
    ("seed195_cosine", "seed195_cosine14", {"epochs": 14}),
])
def test_each_variant_differs_from_its_recipe_only_in_what_it_asks_about(base, variant, change):
    configs = (json.loads(Path(REPO, real.RECIPES[name]).read_text()) for name in (base, variant))
    recipe, other = ({k: v for k, v in c.items() if k != "description"} for c in configs)
    assert other == {**recipe, **change} and other != recipe


def test_only_the_raw_audio_models_learn_the_pack_rendered_as_audio(tmp_path, monkeypatch):
    trained, rendered = {}, []
    data = {"train_only": ["train_a"], "data_dir": "dev", "noise": "noise", "pack_zip": "p.zip"}

    def train_and_score(py, name, data_args, *args, tag="", init=None):
        trained[name] = (list(data_args["train_only"]), tag)
        return {"checkpoint": f"{name}.keras"}

    def stage_pack_audio(pack_zip, out_dir, per_label):
        rendered.append((pack_zip, per_label))
        return "rendered", {"off": 2, "on": 3}

    monkeypatch.setattr(real, "stage_inputs", lambda *a: (dict(data), {}))
    monkeypatch.setattr(real, "stage_set", lambda *a: ("held_out", 2, 3))
    monkeypatch.setattr(real, "train_and_score", train_and_score)
    monkeypatch.setattr(real, "stage_pack_audio", stage_pack_audio)
    monkeypatch.setattr(real, "print_summary", lambda *a: None)
    results = real.run_recipe("shared", str(tmp_path),
                              ["teacher", "seed195", "seed106", "seed195_cosine"],
                              ship_model=False, frozen="", pack_audio=7)
    # rendered once; the raw-audio runs are named for it, so none resumes a run without it
    assert rendered == [("p.zip", 7)] and results["pack_audio"]["clips"] == 5
    minutes = results["minutes"]  # how long each part took, recorded by the run itself
    assert set(minutes) == {"staging", "pack_audio", "teacher", "seed195", "seed106",
                            "seed195_cosine", "total"}
    assert all(m >= 0 for m in minutes.values())
    assert minutes["total"] >= sum(minutes.values()) - minutes["total"] - 0.05
    assert trained == {"teacher": (["train_a"], ""),
                       "seed195": (["train_a", "rendered"], "_pack_audio7"),
                       "seed106": (["train_a", "rendered"], "_pack_audio7"),
                       "seed195_cosine": (["train_a", "rendered"], "_pack_audio7")}
    trained.clear()
    real.run_recipe("shared", str(tmp_path), ["seed195"], ship_model=False, frozen="")
    assert trained == {"seed195": (["train_a"], "")} and len(rendered) == 1


def test_students_of_other_teachers_train_in_their_own_folders():
    # a student of the same seed's teacher run (--models teacher,edge) keeps the name the
    # tables use; any other teacher's students get their own folder (a shared one would
    # resume, or re-score, the other student)
    assert real.teacher_tag("checkpoints/real_teacher_s1/ep-020-vl-0.1941.keras", 1) == ""
    assert real.teacher_tag("checkpoints/real_teacher/ep-020-vl-0.1941.keras") == ""
    assert real.teacher_tag("checkpoints/real_teacher_s1/ep-020-vl-0.1941.keras", 2) \
        == "_teacher_s1"
    assert real.teacher_tag("checkpoints/real_teacher_long_s2/ep-042-vl-0.1820.keras", 1) \
        == "_teacher_long_s2"
    assert real.teacher_tag("/elsewhere/my_teacher/best.keras", 1) == "_my_teacher"


def test_pack_recipes_leave_out_the_pack_images_of_the_v001_stream_speakers():
    data = {"data_dir": "dev,extra", "train_only": [], "noise": "noise", "pack": "p.zip",
            "pack_held_out": ["v001/validation", "v001/testing"]}
    pack_recipe = next(m for m, c in real.RECIPES.items() if real.uses_pack(c))
    audio_recipe = next(m for m, c in real.RECIPES.items() if not real.uses_pack(c))
    cmd = real.train_command("py", real.RECIPES[pack_recipe], data, "exp")
    named = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--pack_held_out_dir"]
    assert named == ["v001/validation", "v001/testing"] and "--pack" in cmd
    assert "--pack_held_out_dir" not in real.train_command("py", real.RECIPES[audio_recipe],
                                                           data, "exp")
