"""convert_to_12_classes.py, ensemble.py and create_pseudo_with_thresh.py on hand-made files."""

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convert_to_12_classes as convert
import create_pseudo_with_thresh as pseudo
import ensemble
from kws.audio import read_wav, write_wav
from kws.common import UserError, run_cli
from kws.data import AudioProcessor
from kws.labels import COMPETITION_LABELS, to_12_classes
from kws.probs import read_probs, write_probs_csv
from kws.pseudo import pseudo_labels, read_input

OTHER_WORDS = ["bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
               "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero"]
LABELS32 = COMPETITION_LABELS + OTHER_WORDS
KAGGLE = {"silence", "unknown", "yes", "no", "up", "down", "left", "right", "on", "off", "stop",
          "go"}


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def exit_code(main, argv):
    with pytest.raises(SystemExit) as e:
        run_cli(main, [str(a) for a in argv])
    return e.value.code


def one_row(**probs):
    row = np.zeros(len(LABELS32))
    for label, p in probs.items():
        row[LABELS32.index(label)] = p
    return row


# ---- to_12_classes -------------------------------------------------------------------------------
def test_sum_and_max_gather_unknown_words():
    probs = np.stack([one_row(_silence_=0.1, _unknown_=0.1, yes=0.2, bed=0.3, cat=0.3),
                      one_row(_silence_=0.5, no=0.3, bird=0.1, dog=0.1)])
    out_sum = to_12_classes(probs, LABELS32, "sum")
    idx = {label: i for i, label in enumerate(COMPETITION_LABELS)}
    np.testing.assert_allclose(out_sum.sum(axis=1), 1.0)
    np.testing.assert_allclose(out_sum[0, [idx["_silence_"], idx["_unknown_"], idx["yes"]]],
                               [0.1, 0.7, 0.2])
    np.testing.assert_allclose(out_sum[1, [idx["_silence_"], idx["_unknown_"], idx["no"]]],
                               [0.5, 0.2, 0.3])
    out_max = to_12_classes(probs, LABELS32, "max")
    np.testing.assert_allclose(out_max.sum(axis=1), 1.0)
    # row 0: unknown = max(0.1, 0.3, 0.3) = 0.3, then renormalised over 0.1 + 0.3 + 0.2
    np.testing.assert_allclose(out_max[0, [idx["_silence_"], idx["_unknown_"], idx["yes"]]],
                               np.array([0.1, 0.3, 0.2]) / 0.6)
    assert out_sum[0].argmax() == idx["_unknown_"] and out_max[0].argmax() == idx["_unknown_"]
    # many small unknown words: sum says unknown, max says yes (the bias the docstring describes)
    row = one_row(yes=0.3, bed=0.14, cat=0.14, dog=0.14, bird=0.14, two=0.14)
    assert COMPETITION_LABELS[to_12_classes(row[None], LABELS32, "sum")[0].argmax()] == "_unknown_"
    assert COMPETITION_LABELS[to_12_classes(row[None], LABELS32, "max")[0].argmax()] == "yes"


def test_twelve_classes_in_any_order_and_submission_labels():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(12), size=5)
    order = rng.permutation(12)
    shuffled_labels = [COMPETITION_LABELS[i] for i in order]
    np.testing.assert_allclose(to_12_classes(probs[:, order], shuffled_labels), probs)
    # submission-style column names are accepted too
    kaggle_names = ["silence", "unknown"] + COMPETITION_LABELS[2:]
    np.testing.assert_allclose(to_12_classes(probs, kaggle_names, "max"), probs)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=32, max_size=32), st.sampled_from(["sum", "max"]))
def test_rows_sum_to_one_and_silence_kept(weights, mode):
    probs = np.array(weights)[None, :] / np.sum(weights)
    out = to_12_classes(probs, LABELS32, mode)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert np.all(out >= 0)
    if mode == "sum":  # the 12 columns already sum to 1: silence and commands unchanged
        np.testing.assert_allclose(out[0, 0], probs[0, 0])
        np.testing.assert_allclose(out[0, 2:], probs[0, 2:12])
    else:  # ratios between the kept columns survive the renormalisation
        np.testing.assert_allclose(out[0, 0] / out[0, 2], probs[0, 0] / probs[0, 2])


def test_to_12_classes_rejects_bad_input():
    with pytest.raises(UserError):
        to_12_classes(np.ones((2, 3)) / 3, ["_silence_", "yes"])
    with pytest.raises(UserError):
        to_12_classes(np.ones((1, 2)) / 2, ["yes", "yes"])
    with pytest.raises(UserError):
        to_12_classes(np.ones((1, 2)) / 2, ["yes", "no"], "mean")


def test_convert_cli_writes_12_class_files(tmp_path):
    probs = np.stack([one_row(_silence_=0.9, bed=0.1), one_row(yes=0.2, bed=0.4, cat=0.4),
                      one_row(go=0.6, wow=0.4)])
    src = tmp_path / "all.probs.csv"
    write_probs_csv(src, ["a.wav", "b.wav", "c.wav"], LABELS32, probs)
    convert.main(["--probs", str(src), "--submission_fn", str(tmp_path / "s12.csv")])
    assert read_rows(tmp_path / "s12.csv") == [["fname", "label"], ["a.wav", "silence"],
                                               ["b.wav", "unknown"], ["c.wav", "go"]]
    rows = read_rows(tmp_path / "s12.probs.csv")
    assert rows[0] == ["fname"] + COMPETITION_LABELS
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-5)
    assert exit_code(convert.main, ["--probs", tmp_path / "s12.csv", "--submission_fn",
                                    tmp_path / "x.csv"]) == 2  # a submission is no probs file
    assert exit_code(convert.main, ["--probs", tmp_path / "none.csv", "--submission_fn",
                                    tmp_path / "x.csv"]) == 2
    assert exit_code(convert.main, ["--probs", src, "--submission_fn", tmp_path / "all.csv"]) == 2
    assert exit_code(convert.main, ["--probs", src, "--submission_fn", src]) == 2


# ---- ensemble ------------------------------------------------------------------------------------
def write_12(path, fnames, probs, labels=COMPETITION_LABELS):
    write_probs_csv(path, fnames, labels, probs)
    return path


def test_ensemble_matches_rows_and_columns_and_weights(tmp_path):
    rng = np.random.default_rng(2)
    fnames = [f"clip_{i}.wav" for i in range(6)]
    a, b = rng.dirichlet(np.ones(12), 6), rng.dirichlet(np.ones(12), 6)
    rows, cols = rng.permutation(6), rng.permutation(12)
    fa = write_12(tmp_path / "a.probs.csv", fnames, a)
    fb = write_12(tmp_path / "b.probs.csv", [fnames[i] for i in rows], b[rows][:, cols],
                  [COMPETITION_LABELS[j] for j in cols])
    ensemble.main(["--probs", str(fa), str(fb), "--weights", "3,1",
                   "--submission_fn", str(tmp_path / "ens.csv")])
    out = read_rows(tmp_path / "ens.probs.csv")
    assert out[0] == ["fname"] + COMPETITION_LABELS and [r[0] for r in out[1:]] == fnames
    mean = np.array([[float(v) for v in r[1:]] for r in out[1:]])
    np.testing.assert_allclose(mean, 0.75 * a + 0.25 * b, atol=2e-6)
    sub = read_rows(tmp_path / "ens.csv")
    assert sub[0] == ["fname", "label"]
    names = ["silence", "unknown"] + COMPETITION_LABELS[2:]
    assert [r[1] for r in sub[1:]] == [names[i] for i in (0.75 * a + 0.25 * b).argmax(axis=1)]


def test_ensemble_refuses_mismatched_files(tmp_path, capsys):
    probs = np.full((3, 12), 1 / 12)
    fa = write_12(tmp_path / "a.csv", ["x.wav", "y.wav", "z.wav"], probs)
    fb = write_12(tmp_path / "b.csv", ["x.wav", "y.wav", "w.wav"], probs)
    all_words = tmp_path / "c.csv"
    write_probs_csv(all_words, ["x.wav", "y.wav", "z.wav"], LABELS32, np.full((3, 32), 1 / 32))
    out = ["--submission_fn", tmp_path / "e.csv"]
    assert exit_code(ensemble.main, ["--probs", fa, fb] + out) == 2
    assert "cover different clips" in capsys.readouterr().err
    assert exit_code(ensemble.main, ["--probs", fa, all_words] + out) == 2
    err = capsys.readouterr().err
    assert "different labels" in err and err.count("\n") == 1
    assert exit_code(ensemble.main, ["--probs", fa, fa, "--weights", "1"] + out) == 2
    assert exit_code(ensemble.main, ["--probs", fa, fa, "--weights", "1,x"] + out) == 2
    assert exit_code(ensemble.main, ["--probs", fa, fa, "--weights", "0,0"] + out) == 2
    assert exit_code(ensemble.main, ["--probs", fa, "--submission_fn", fa]) == 2  # overwrite
    write_12(tmp_path / "e.probs.csv", ["x.wav", "y.wav", "z.wav"], probs)
    assert exit_code(ensemble.main, ["--probs", tmp_path / "e.probs.csv", fa] + out) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("fname,yes\nx.wav,abc\n")
    assert exit_code(ensemble.main, ["--probs", fa, bad] + out) == 2
    assert not (tmp_path / "e.csv").exists()


# ---- create_pseudo_with_thresh -------------------------------------------------------------------
@pytest.fixture
def test_folder(tmp_path):
    """Six 16 kHz clips, one 8 kHz clip and a silence-ish clip, flat like Kaggle's test/audio."""
    folder = tmp_path / "test_audio"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        write_wav(folder / f"c{i}.wav", 0.3 * np.sin(np.arange(16000) * (0.05 + 0.01 * i)))
    write_wav(folder / "c6.wav", 0.2 * rng.standard_normal(8000), sample_rate=8000)
    write_wav(folder / "quiet.wav", 0.001 * rng.standard_normal(16000))
    return folder


FNAMES = ["c0.wav", "c1.wav", "c2.wav", "c3.wav", "c4.wav", "c5.wav", "c6.wav", "quiet.wav"]


def probs_for(winners, confidences, labels=COMPETITION_LABELS):
    rows = []
    for label, p in zip(winners, confidences):
        row = np.full(len(labels), (1 - p) / (len(labels) - 1))
        row[labels.index(label)] = p
        rows.append(row)
    return np.array(rows)


def test_pseudo_threshold_agreement_and_dataset(test_folder, tmp_path, capsys):
    winners = ["yes", "no", "yes", "_unknown_", "go", "stop", "yes", "_silence_"]
    conf = [0.9, 0.95, 0.5, 0.8, 0.75, 0.99, 0.9, 0.8]
    probs = write_12(tmp_path / "m.probs.csv", FNAMES, probs_for(winners, conf))
    sub = tmp_path / "other.csv"  # a second model that disagrees on c5
    labels = ["yes", "no", "yes", "unknown", "go", "left", "yes", "silence"]
    sub.write_text("fname,label\n" + "".join(f"{f},{lab}\n" for f, lab in zip(FNAMES, labels)))
    out = tmp_path / "pseudo"
    pseudo.main(["--inputs", str(probs), str(sub), "--threshold", "0.7", "--test_data",
                 str(test_folder), "--out_dir", str(out)])
    printed = capsys.readouterr().out
    assert "kept 6 of 8 clips" in printed  # c2 below 0.7, c5 disagreement
    assert sorted(p.name for p in (out / "yes").iterdir()) == ["c0.wav", "c6.wav"]
    assert [p.name for p in (out / "no").iterdir()] == ["c1.wav"]
    assert [p.name for p in (out / "_unknown_").iterdir()] == ["c3.wav"]
    assert [p.name for p in (out / "go").iterdir()] == ["c4.wav"]
    assert not (out / "stop").exists() and not (out / "left").exists()
    # 16 kHz 16-bit clips are copied as they are; the 8 kHz one is re-encoded at 16 kHz
    assert (out / "yes" / "c0.wav").read_bytes() == (test_folder / "c0.wav").read_bytes()
    import soundfile as sf
    assert sf.info(out / "yes" / "c6.wav").samplerate == 16000
    noise = read_wav(out / "_background_noise_" / "pseudo_silence.wav", num_samples=None)
    assert len(noise) == 16000
    np.testing.assert_allclose(np.sqrt(np.mean(noise ** 2)), 0.03, rtol=0.02)
    info = json.loads((out / "pseudo_info.json").read_text())
    assert info["counts"] == {"yes": 2, "no": 1, "_unknown_": 1, "go": 1, "_silence_": 1}


def test_pseudo_pool_is_read_by_audio_processor(test_folder, tmp_path):
    train = tmp_path / "train"
    for word in ("yes", "no"):
        (train / word).mkdir(parents=True)
        for i in range(3):
            write_wav(train / word / f"spk{i}_nohash_0.wav", 0.1 * np.ones(16000))
    winners = ["yes", "no", "yes", "_unknown_", "go", "stop", "yes", "_silence_"]
    probs = write_12(tmp_path / "m.probs.csv", FNAMES, probs_for(winners, [0.9] * 8))
    out = tmp_path / "pseudo"
    pseudo.main(["--inputs", str(probs), "--test_data", str(test_folder), "--out_dir", str(out)])
    processor = AudioProcessor([str(train)], wanted_words="yes,no", pseudo_dirs=[str(out)],
                               pseudo_frequency=0.3)
    labels = sorted(item["label"] for item in processor.pseudo_index)
    # go and stop are not wanted words here: the pool gives them as unknown
    assert labels == ["_unknown_", "_unknown_", "_unknown_", "no", "yes", "yes", "yes"]
    assert len(processor.noise_train) == 1  # pseudo_silence.wav


def test_pseudo_all_words_space_and_mixed_space(test_folder, tmp_path):
    winners = ["bed", "yes", "cat", "no", "bed", "go", "yes", "_silence_"]
    all_a = write_12(tmp_path / "a.probs.csv", FNAMES, probs_for(winners, [0.8] * 8, LABELS32),
                     LABELS32)
    all_b = write_12(tmp_path / "b.probs.csv", FNAMES,
                     probs_for(["bird"] + winners[1:], [0.8] * 8, LABELS32), LABELS32)
    inputs = [read_input(str(all_a)), read_input(str(all_b))]
    fnames, labels, conf = pseudo_labels(inputs, 0.7)
    assert "c0.wav" not in fnames  # bed vs bird: both models' own words disagree
    assert dict(zip(fnames, labels))["c2.wav"] == "cat"  # the word survives
    assert np.all(conf >= 0.7)
    # with a 12-class file in the mix the comparison moves to the 12 classes
    twelve = write_12(tmp_path / "t.probs.csv", FNAMES,
                      probs_for(["_unknown_", "yes", "_unknown_", "no", "_unknown_", "go", "yes",
                                 "_silence_"], [0.9] * 8))
    inputs.append(read_input(str(twelve)))
    fnames, labels, _ = pseudo_labels(inputs, 0.7)
    assert len(fnames) == 8  # bed and bird are both unknown in 12 classes
    assert dict(zip(fnames, labels))["c0.wav"] == "_unknown_"
    # every probabilities file must pass the threshold (in 12 classes the all-words files' unknown
    # gathers 0.8 plus a share of the rest, so they pass 0.85 where the 12-class file's 0.9 fails)
    fnames, _, _ = pseudo_labels(inputs, 0.85)
    assert fnames == ["c0.wav", "c2.wav", "c4.wav"]
    assert pseudo_labels(inputs, 0.95)[0] == []


def test_pseudo_bad_input_exits_2(test_folder, tmp_path):
    probs = write_12(tmp_path / "m.probs.csv", FNAMES, probs_for(["yes"] * 8, [0.9] * 8))
    sub = tmp_path / "s.csv"
    sub.write_text("fname,label\n" + "".join(f"{f},yes\n" for f in FNAMES))
    other = write_12(tmp_path / "o.probs.csv", FNAMES[:-1], probs_for(["yes"] * 7, [0.9] * 7))
    base = ["--test_data", test_folder]
    out = ["--out_dir", tmp_path / "p"]
    assert exit_code(pseudo.main, ["--inputs", sub] + base + out) == 2  # no probabilities
    assert exit_code(pseudo.main, ["--inputs", probs, other] + base + out) == 2  # other clips
    assert exit_code(pseudo.main, ["--inputs", probs, "--test_data", tmp_path / "nope"] + out) == 2
    assert exit_code(pseudo.main, ["--inputs", probs, "--threshold", "1.5"] + base + out) == 2
    assert exit_code(pseudo.main, ["--inputs", probs, "--threshold", "0.95"] + base + out) == 2
    assert not (tmp_path / "p").exists()
    pseudo.main(["--inputs", str(probs)] + [str(a) for a in base + out])
    assert exit_code(pseudo.main, ["--inputs", probs] + base + out) == 2  # exists
    pseudo.main(["--inputs", str(probs), "--overwrite"] + [str(a) for a in base + out])
    assert len(list((tmp_path / "p" / "yes").iterdir())) == 8
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("not ours")
    assert exit_code(pseudo.main, ["--inputs", probs, "--overwrite", "--out_dir",
                                   tmp_path / "mine"] + base) == 2
    assert (tmp_path / "mine" / "keep.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


# ---- the 12-class uint8 memmap -------------------------------------------------------------------
def test_convert_and_ensemble_write_a_12_class_memmap_that_reads_back(tmp_path):
    from kws.probs import read_probs_u8

    rng = np.random.default_rng(5)
    fnames = [f"clip_{i}.wav" for i in range(7)]
    src = tmp_path / "all.probs.csv"
    write_probs_csv(src, fnames, LABELS32, rng.dirichlet(np.ones(32), 7))
    convert.main(["--probs", str(src), "--submission_fn", str(tmp_path / "s12.csv")])
    got_fnames, labels, u8 = read_probs_u8(str(tmp_path / "s12.probs.json"))
    want = to_12_classes(read_probs(str(src))[2], LABELS32)
    assert got_fnames == fnames and labels == COMPETITION_LABELS
    assert (tmp_path / "s12.probs.u8").stat().st_size == 7 * 12
    assert np.abs(u8 - want).max() <= 0.5 / 255 + 1e-6
    # the memmap feeds an ensemble like a CSV does, and the ensemble writes its own
    ensemble.main(["--probs", str(tmp_path / "s12.probs.json"), str(tmp_path / "s12.probs.csv"),
                   "--submission_fn", str(tmp_path / "ens.csv")])
    _, labels, mean_u8 = read_probs_u8(str(tmp_path / "ens.probs.json"))
    assert labels == COMPETITION_LABELS
    assert np.abs(mean_u8 - want).max() <= 1.5 / 255
    assert [r[1] for r in read_rows(tmp_path / "ens.csv")[1:]] == \
        [r[1] for r in read_rows(tmp_path / "s12.csv")[1:]]
    # an all-words ensemble keeps every word in its CSV, and folds into 12 in its memmap
    ensemble.main(["--probs", str(src), "--submission_fn", str(tmp_path / "all_ens.csv")])
    assert read_rows(tmp_path / "all_ens.probs.csv")[0][1:] == LABELS32
    _, labels, all_u8 = read_probs_u8(str(tmp_path / "all_ens.probs.json"))
    assert labels == COMPETITION_LABELS and np.abs(all_u8 - want).max() <= 0.5 / 255 + 1e-6


def test_a_memmap_that_disagrees_with_its_sidecar_is_refused(tmp_path, capsys):
    from kws.common import UserError
    from kws.probs import read_probs_u8, write_probs_u8

    u8, sidecar = tmp_path / "x.probs.u8", tmp_path / "x.probs.json"
    write_probs_u8(str(u8), str(sidecar), ["a.wav", "b.wav"], COMPETITION_LABELS,
                   np.full((2, 12), 1 / 12))
    assert read_probs_u8(str(sidecar))[2].shape == (2, 12)
    u8.write_bytes(u8.read_bytes()[:-1])
    with pytest.raises(UserError, match="holds 23 bytes; its sidecar says 2 x 12 = 24"):
        read_probs_u8(str(sidecar))
    assert exit_code(ensemble.main, ["--probs", sidecar, "--submission_fn",
                                     tmp_path / "e.csv"]) == 2
    assert "holds 23 bytes" in capsys.readouterr().err
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "fnames": ["a.wav"]}))
    with pytest.raises(UserError, match="does not match its 1 fnames"):
        read_probs_u8(str(sidecar))
    sidecar.write_text("{not json")
    with pytest.raises(UserError, match="not a probabilities sidecar"):
        read_probs_u8(str(sidecar))
