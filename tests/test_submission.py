"""make_submission.py: output formats, TTA averaging, resuming, scoring and bad input.

The model is tiny and exact: logits = mean(clip) * kernel + bias, so every probability can be
recomputed here with numpy. Clips are constant (DC) signals whose sign picks `yes` or `no`.
"""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

import make_submission
from kws.audio import read_wav, write_wav
from kws.common import run_cli
from kws.labels import COMPETITION_LABELS
from kws.probs import read_probs_u8
from kws.submission import chunks
from kws.submission.tta import Variant, shift_clips, tta_variants

LABELS12 = COMPETITION_LABELS
KERNEL_SCALE = 40.0


def save_model(folder, labels, kernel, bias):
    """logits = mean(audio) * kernel + bias, saved as <folder>/ep-001-vl-0.5.keras + labels.txt."""
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    inputs = keras.Input((16000,))
    x = keras.layers.Reshape((16000, 1))(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    dense = keras.layers.Dense(len(labels))
    model = keras.Model(inputs, dense(x))
    dense.set_weights([np.asarray(kernel, np.float32)[None, :], np.asarray(bias, np.float32)])
    model.save(folder / "ep-001-vl-0.5.keras")
    (folder / "labels.txt").write_text("\n".join(labels) + "\n")
    return folder / "ep-001-vl-0.5.keras"


def sign_model(folder, labels=LABELS12):
    """Positive mean -> yes, negative -> no, zero -> silence (bias), everything else unlikely."""
    kernel = np.zeros(len(labels))
    kernel[labels.index("yes")] = KERNEL_SCALE
    kernel[labels.index("no")] = -KERNEL_SCALE
    bias = np.full(len(labels), -1.0)
    bias[labels.index("_silence_")] = 0.5
    return save_model(folder, labels, kernel, bias)


@pytest.fixture(scope="module")
def model12(tmp_path_factory):
    return sign_model(tmp_path_factory.mktemp("ckpt12"))


@pytest.fixture(scope="module")
def flat_clips(tmp_path_factory):
    """10 clips with DC levels from -0.2 to 0.25 (flat folder, Kaggle test layout)."""
    folder = tmp_path_factory.mktemp("flat")
    rng = np.random.default_rng(0)
    for i, level in enumerate(np.linspace(-0.2, 0.25, 10)):
        write_wav(folder / f"clip_{i:04d}.wav", level + 0.01 * rng.standard_normal(16000))
    return folder


def expected_probs(paths, kernel, bias, transforms=(lambda x: x,)):
    """Mean softmax over transforms of the model's logits, recomputed with numpy."""
    total = 0
    for transform in transforms:
        means = np.array([transform(read_wav(p)).mean() for p in paths], np.float64)
        logits = means[:, None] * kernel[None, :] + bias[None, :]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        total = total + e / e.sum(axis=1, keepdims=True)
    return total / len(transforms)


def sign_kernel_bias(labels=LABELS12):
    kernel = np.zeros(len(labels))
    kernel[labels.index("yes")], kernel[labels.index("no")] = KERNEL_SCALE, -KERNEL_SCALE
    bias = np.full(len(labels), -1.0)
    bias[labels.index("_silence_")] = 0.5
    return kernel, bias


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def run(argv):
    return make_submission.main([str(a) for a in argv])


def exit_code(argv):
    with pytest.raises(SystemExit) as e:
        run_cli(make_submission.main, [str(a) for a in argv])
    return e.value.code


def test_formats_and_probabilities(model12, flat_clips, tmp_path):
    sub = tmp_path / "out" / "sub.csv"
    run(["--checkpoint", model12, "--test_data", flat_clips, "--submission_fn", sub])
    rows = read_rows(sub)
    names = sorted(p.name for p in flat_clips.glob("*.wav"))
    assert rows[0] == ["fname", "label"]
    assert [r[0] for r in rows[1:]] == names
    kaggle = {"silence", "unknown", "yes", "no", "up", "down", "left", "right", "on", "off",
              "stop", "go"}
    assert {r[1] for r in rows[1:]} <= kaggle
    # DC levels -0.2 .. 0.25: negative ones say no, positive ones yes
    assert [r[1] for r in rows[1:]][:3] == ["no"] * 3 and rows[-1][1] == "yes"

    probs_rows = read_rows(tmp_path / "out" / "sub.probs.csv")
    assert probs_rows[0] == ["fname"] + LABELS12
    probs = np.array([[float(v) for v in r[1:]] for r in probs_rows[1:]])
    assert [r[0] for r in probs_rows[1:]] == names
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    kernel, bias = sign_kernel_bias()
    expected = expected_probs(sorted(flat_clips.glob("*.wav")), kernel, bias)
    np.testing.assert_allclose(probs, expected, atol=2e-6)

    sidecar = json.loads((tmp_path / "out" / "sub.probs.json").read_text())
    assert sidecar["shape"] == [10, 12] and sidecar["dtype"] == "uint8"
    assert sidecar["labels"] == LABELS12 and sidecar["fnames"] == names
    assert sidecar["unreadable"] == []
    u8 = np.fromfile(tmp_path / "out" / "sub.probs.u8", dtype=np.uint8).reshape(10, 12)
    np.testing.assert_array_equal(u8, np.rint(expected * 255).astype(np.uint8))
    fnames, labels, from_u8 = read_probs_u8(str(tmp_path / "out" / "sub.probs.json"))
    assert fnames == names and labels == LABELS12
    assert np.abs(from_u8 - expected).max() <= 0.5 / 255 + 1e-6
    assert not (tmp_path / "out" / "sub.csv.parts").exists()  # work folder gone when done
    assert not (tmp_path / "out" / "sub.confusion.png").exists()  # no labels known


def test_all_words_model_maps_other_words_to_unknown(flat_clips, tmp_path):
    labels = ["_silence_", "_unknown_", "bed", "bird", "cat"] + LABELS12[2:]
    kernel, bias = np.zeros(len(labels)), np.zeros(len(labels))
    bias[labels.index("bed")] = 3.0  # every clip: bed
    ckpt = save_model(tmp_path / "ckpt_all", labels, kernel, bias)
    sub = tmp_path / "all.csv"
    run(["--checkpoint", ckpt, "--test_data", flat_clips, "--submission_fn", sub])
    rows = read_rows(sub)
    assert {r[1] for r in rows[1:]} == {"unknown"}
    assert read_rows(tmp_path / "all.probs.csv")[0] == ["fname"] + labels  # every word kept


def test_tta_averages_variants_and_keeps_formats(model12, flat_clips, tmp_path):
    sub = tmp_path / "tta.csv"
    run(["--checkpoint", model12, "--test_data", flat_clips, "--submission_fn", sub,
         "--tta_shift=-1500,4000", "--tta_gain", "0.5"])
    probs_rows = read_rows(tmp_path / "tta.probs.csv")
    assert probs_rows[0] == ["fname"] + LABELS12 and len(probs_rows) == 11
    probs = np.array([[float(v) for v in r[1:]] for r in probs_rows[1:]])
    transforms = (lambda x: x,
                  lambda x: np.concatenate([x[1500:], np.zeros(1500, np.float32)]),
                  lambda x: np.concatenate([np.zeros(4000, np.float32), x[:-4000]]),
                  lambda x: x * 0.5)
    kernel, bias = sign_kernel_bias()
    paths = sorted(flat_clips.glob("*.wav"))
    np.testing.assert_allclose(probs, expected_probs(paths, kernel, bias, transforms), atol=2e-6)
    assert not np.allclose(probs, expected_probs(paths, kernel, bias), atol=1e-3)
    sidecar = json.loads((tmp_path / "tta.probs.json").read_text())
    assert sidecar["tta"] == ["identity", "shift:-1500", "shift:4000", "gain:0.5"]
    assert sidecar["shape"] == [10, 12]


def test_stretch_variant_keeps_length_and_formats(model12, flat_clips, tmp_path):
    clips = np.stack([read_wav(p) for p in sorted(flat_clips.glob("*.wav"))[:2]])
    for rate in (0.9, 1.1):
        stretched = Variant("stretch", rate)(clips)
        assert stretched.shape == clips.shape and stretched.dtype == np.float32
    sub = tmp_path / "stretch.csv"
    run(["--checkpoint", model12, "--test_data", flat_clips, "--submission_fn", sub,
         "--tta_stretch", "0.9,1.1", "--batch_size", "4"])
    rows = read_rows(sub)
    assert rows[0] == ["fname", "label"] and len(rows) == 11
    probs = np.array([[float(v) for v in r[1:]] for r in read_rows(tmp_path /
                                                                     "stretch.probs.csv")[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_resume_after_interruption_gives_identical_outputs(model12, flat_clips, tmp_path,
                                                           monkeypatch, capsys):
    args = ["--checkpoint", model12, "--test_data", flat_clips, "--chunk_size", "3",
            "--batch_size", "2"]
    run(args + ["--submission_fn", tmp_path / "whole" / "sub.csv"])

    real = chunks.predict_chunk
    calls = []

    def crash_after_two(*a, **k):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("killed")
        return real(*a, **k)

    monkeypatch.setattr(chunks, "predict_chunk", crash_after_two)
    sub = tmp_path / "resumed" / "sub.csv"
    with pytest.raises(RuntimeError, match="killed"):
        run(args + ["--submission_fn", sub])
    parts = sorted(p.name for p in (tmp_path / "resumed" / "sub.csv.parts").iterdir())
    assert parts == ["chunk-000000.npz", "chunk-000001.npz", "manifest.json"]
    assert not sub.exists()

    calls.clear()
    monkeypatch.setattr(chunks, "predict_chunk",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    capsys.readouterr()
    run(args + ["--submission_fn", sub])
    assert len(calls) == 2  # chunks 2 and 3 of 4 (10 clips, 3 per chunk)
    assert "resuming: 6 of 10 clips" in capsys.readouterr().err
    for name in ("sub.csv", "sub.probs.csv", "sub.probs.u8", "sub.probs.json"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" /
                                                               name).read_bytes(), name
    assert not (tmp_path / "resumed" / "sub.csv.parts").exists()


def test_changed_inputs_start_afresh(model12, flat_clips, tmp_path, monkeypatch, capsys):
    sub = tmp_path / "sub.csv"
    args = ["--checkpoint", model12, "--test_data", flat_clips, "--submission_fn", sub,
            "--chunk_size", "4"]
    real = chunks.predict_chunk
    calls = []

    def crash_after_one(*a, **k):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("killed")
        return real(*a, **k)

    monkeypatch.setattr(chunks, "predict_chunk", crash_after_one)
    with pytest.raises(RuntimeError):
        run(args)
    calls.clear()
    monkeypatch.setattr(chunks, "predict_chunk",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    capsys.readouterr()
    run(args + ["--tta_gain", "1.2"])  # other flags: the saved chunk must not be reused
    assert len(calls) == 3
    assert "starting afresh" in capsys.readouterr().err
    # a clip rewritten in place (same name, same size): the saved chunk must not be reused
    calls.clear()
    monkeypatch.setattr(chunks, "predict_chunk", crash_after_one)
    with pytest.raises(RuntimeError):
        run(args)
    clip = sorted(Path(flat_clips).glob("*.wav"))[0]
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))
    calls.clear()
    monkeypatch.setattr(chunks, "predict_chunk",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    capsys.readouterr()
    run(args)
    assert len(calls) == 3 and "starting afresh" in capsys.readouterr().err


def test_labelled_folders_are_scored_with_confusion_png(model12, tmp_path, capsys):
    data = tmp_path / "labelled"
    for label, level, count in (("yes", 0.1, 3), ("no", -0.1, 2), ("_silence_", 0.0, 1)):
        (data / label).mkdir(parents=True)
        for i in range(count):
            # the same basename in several folders, as in the official test set
            write_wav(data / label / f"spk{i}_nohash_0.wav", np.full(16000, level))
    write_wav(data / "no" / "odd_nohash_0.wav", np.full(16000, 0.1))  # a `no` the model calls yes
    sub = tmp_path / "scored.csv"
    run(["--checkpoint", model12, "--test_data", data, "--submission_fn", sub])
    out = capsys.readouterr().out
    assert "accuracy 0.8571 on 7 labelled clips" in out
    assert "no           0.6667       3" in out
    assert "yes          1.0000       3" in out
    png = (tmp_path / "scored.confusion.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    fnames = [r[0] for r in read_rows(sub)[1:]]
    assert "yes/spk0_nohash_0.wav" in fnames and "no/spk0_nohash_0.wav" in fnames
    assert len(set(fnames)) == len(fnames) == 7


def test_answers_file_scores_a_flat_folder(model12, flat_clips, tmp_path, capsys):
    answers = tmp_path / "key.csv"
    names = sorted(p.name for p in flat_clips.glob("*.wav"))
    # truth: the first five are `no`, the rest `yes` except the last, a `bed` (-> unknown)
    truth = ["no"] * 5 + ["yes"] * 4 + ["bed"]
    answers.write_text("fname,label\n" + "".join(f"{n},{t}\n" for n, t in zip(names, truth)))
    run(["--checkpoint", model12, "--test_data", flat_clips, "--submission_fn",
         tmp_path / "s.csv", "--answers", answers])
    predicted = [r[1] for r in read_rows(tmp_path / "s.csv")[1:]]
    correct = sum(p == (t if t != "bed" else "unknown") for p, t in zip(predicted, truth))
    assert f"accuracy {correct / 10:.4f} on 10 labelled clips" in capsys.readouterr().out
    assert (tmp_path / "s.confusion.png").exists()


def test_unreadable_clip_is_labelled_silence(model12, flat_clips, tmp_path, capsys):
    data = tmp_path / "with_bad"
    data.mkdir()
    for p in sorted(flat_clips.glob("*.wav"))[:3]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    run(["--checkpoint", model12, "--test_data", data, "--submission_fn", tmp_path / "b.csv"])
    rows = dict(read_rows(tmp_path / "b.csv")[1:])
    assert rows["broken.wav"] == "silence" and len(rows) == 4
    probs = {r[0]: [float(v) for v in r[1:]] for r in read_rows(tmp_path / "b.probs.csv")[1:]}
    assert probs["broken.wav"] == [1.0] + [0.0] * 11
    assert json.loads((tmp_path / "b.probs.json").read_text())["unreadable"] == ["broken.wav"]
    assert "1 unreadable clips labelled silence" in capsys.readouterr().err


def test_benchmark_reports_speed_and_writes_nothing(model12, flat_clips, tmp_path, capsys):
    run(["--checkpoint", model12, "--test_data", flat_clips, "--benchmark", "25",
         "--batch_size", "8"])
    out = capsys.readouterr().out
    assert "benchmark on 25 clips" in out and "clips/s" in out
    from kws.submission.run import benchmark

    result = benchmark(lambda x: np.zeros((len(x), 12), np.float32),
                       [str(p) for p in flat_clips.glob("*.wav")], 4, 12)
    assert result["clips"] == 12 and result["total_clips_per_s"] > 0


def test_bad_input_exits_2(model12, flat_clips, tmp_path):
    sub = ["--submission_fn", tmp_path / "x.csv"]
    ckpt = ["--checkpoint", model12]
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "all_bad"
    bad.mkdir()
    (bad / "a.wav").write_bytes(b"not audio")
    assert exit_code(ckpt + ["--test_data", tmp_path / "missing"] + sub) == 2
    assert exit_code(ckpt + ["--test_data", tmp_path / "empty"] + sub) == 2
    assert exit_code(ckpt + ["--test_data", bad] + sub) == 2
    assert exit_code(["--checkpoint", tmp_path / "no.keras", "--test_data", flat_clips] + sub) == 2
    assert exit_code(ckpt + ["--test_data", flat_clips]) == 2  # no --submission_fn
    for flag in (["--tta_shift", "abc"], ["--tta_shift", "16000"], ["--tta_gain", "-1"],
                 ["--batch_size", "0"], ["--unknown_mode", "mean"],
                 ["--answers", tmp_path / "nope.csv"]):
        assert exit_code(ckpt + ["--test_data", flat_clips] + sub + flag) == 2, flag
    assert not (tmp_path / "x.csv").exists()


def test_real_test_set(model12, tmp_path, shared_data):
    data = shared_data / "speech_commands_test_v0.02_dev"
    sub = tmp_path / "real.csv"
    run(["--checkpoint", model12, "--test_data", data, "--submission_fn", sub,
         "--chunk_size", "1024"])
    rows = read_rows(sub)
    fnames = [r[0] for r in rows[1:]]
    assert len(fnames) == len(set(fnames)) == len(list(data.glob("*/*.wav")))
    assert (tmp_path / "real.confusion.png").exists()


def test_tta_flags_parse():
    parse = make_submission.build_parser().parse_args
    base = ["--checkpoint", "c.keras", "--test_data", "d"]
    assert parse(base + ["--tta_shift", "-1500"]).tta_shift == [-1500]
    assert parse(base + ["--tta_shift=-1500,1500", "--tta_stretch", "0.9,1.1"]).tta_stretch == [
        0.9, 1.1]
    names = [v.name for v in tta_variants([-1500], [1.2], [0.9])]
    assert names == ["identity", "shift:-1500", "gain:1.2", "stretch:0.9"]
    clips = np.arange(2 * 16000, dtype=np.float32).reshape(2, 16000) / 32000
    np.testing.assert_array_equal(shift_clips(clips, 3)[:, :3], 0)
    np.testing.assert_array_equal(shift_clips(clips, -3)[:, :-3], clips[:, 3:])
