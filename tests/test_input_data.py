import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_speech_commands, tone

from kws.audio import write_wav
from kws.augment import Augmentation, NoiseBank, apply_augmentation, augment_batch
from kws.common import UserError
from kws.data import AudioProcessor
from kws.folders import MAX_NUM_WAVS_PER_CLASS, list_test_clips, speaker_id, which_set
from kws.labels import COMPETITION_LABELS, SILENCE_LABEL, UNKNOWN_LABEL

REPO = Path(__file__).resolve().parents[1]


def tutorial_which_set(filename, validation_percentage, testing_percentage):
    """Verbatim logic of tensorflow/examples/speech_commands/input_data.py:which_set."""
    base_name = Path(filename).name
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    hash_name_hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = ((int(hash_name_hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) *
                       (100.0 / MAX_NUM_WAVS_PER_CLASS))
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < (testing_percentage + validation_percentage):
        return "testing"
    return "training"


def test_which_set_equals_the_tutorials_hash():
    names = [f"{i:08x}_nohash_{n}.wav" for i in range(0, 2**32, 2**32 // 500) for n in (0, 3)]
    for name in names:
        assert which_set(name, 10, 10) == tutorial_which_set(name, 10, 10)
    sets = [which_set(n, 10, 10) for n in names]
    assert 0.05 < sets.count("validation") / len(sets) < 0.15


def test_split_is_by_speaker_and_salt_draws_another_split():
    assert which_set("abc_nohash_0.wav", 30, 30) == which_set("abc_nohash_7.wav", 30, 30)
    # the official test set names unknown words <word>_<speaker>_nohash_<n>
    assert speaker_id("backward_0cb74144_nohash_2.wav.wav") == "0cb74144"
    assert which_set("learn_0cb74144_nohash_0.wav", 30, 30) == which_set(
        "0cb74144_nohash_1.wav", 30, 30)
    names = [f"{i:08x}_nohash_0.wav" for i in range(200)]
    plain = [which_set(n, 30, 30) for n in names]
    salted = [which_set(n, 30, 30, salt="x") for n in names]
    assert plain != salted


def test_v001_lists_match_the_hash(shared_data):
    root = shared_data / "speech_commands_v0.01_sample"
    val = set((root / "validation_list.txt").read_text().split())
    test = set((root / "testing_list.txt").read_text().split())
    checked = 0
    for wav in root.glob("*/*.wav"):
        key = f"{wav.parent.name}/{wav.name}"
        expected = "validation" if key in val else "testing" if key in test else "training"
        assert which_set(wav.name, 10, 10) == expected
        checked += 1
    assert checked == 272


def test_class_counts_follow_the_percentages(speech_commands):
    p = AudioProcessor(str(speech_commands), silence_percentage=20, unknown_percentage=50,
                       validation_percentage=25, testing_percentage=25)
    assert p.words_list == COMPETITION_LABELS
    for which in ("training", "validation", "testing"):
        counts = p.label_counts(which)
        words = sum(counts[w] for w in COMPETITION_LABELS[2:])
        assert counts[SILENCE_LABEL] == int(np.ceil(words * 0.2))
        available = 2 * words // 10  # cat and dog: two unknown words per speaker
        assert counts[UNKNOWN_LABEL] == min(available, int(np.ceil(words * 0.5)))
    speakers = [p.speakers(w) for w in ("training", "validation", "testing")]
    assert sum(len(s) for s in speakers) == 12
    assert not (speakers[0] & speakers[1]) and not (speakers[0] & speakers[2])


def test_same_seed_same_sets_and_batches(speech_commands):
    def first_batch(seed):
        p = AudioProcessor(str(speech_commands), seed=seed, unknown_percentage=30)
        x, y = next(iter(p.dataset("training", 8, epochs=1)))
        return p.data_index, x.numpy(), y.numpy()

    a, b, c = first_batch(1), first_batch(1), first_batch(2)
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    assert a[0] != c[0] or not np.array_equal(a[1], c[1])


def test_all_words_mode(speech_commands):
    p = AudioProcessor(str(speech_commands), wanted_words="all")
    assert p.words_list[:2] == [SILENCE_LABEL, UNKNOWN_LABEL]
    assert len(p.words_list) == 2 + 12
    assert sum(p.label_counts("training")[UNKNOWN_LABEL] for _ in [0]) == 0


def test_lists_beside_the_words_win_over_hashing(tmp_path):
    speakers = [f"{i:08x}" for i in range(6)]
    root = make_speech_commands(tmp_path / "sc", ["yes", "no"], speakers,
                                lists={"validation": speakers[:1], "testing": speakers[1:3]})
    p = AudioProcessor(str(root), silence_percentage=0, unknown_percentage=0)
    assert p.speakers("validation") == set(speakers[:1])
    assert p.speakers("testing") == set(speakers[1:3])
    assert p.set_size("training") == 6


def test_kaggle_layout_with_lists_one_level_up(tmp_path):
    speakers = [f"{i:08x}" for i in range(5)]
    audio = make_speech_commands(tmp_path / "train" / "audio", ["yes", "go"], speakers)
    (tmp_path / "train" / "validation_list.txt").write_text(f"yes/{speakers[0]}_nohash_0.wav\n")
    (tmp_path / "train" / "testing_list.txt").write_text(f"go/{speakers[1]}_nohash_0.wav\n")
    for root in (tmp_path / "train", audio):
        p = AudioProcessor(str(root), silence_percentage=0, unknown_percentage=0)
        assert p.set_size("validation") == 1 and p.set_size("testing") == 1
        # split by speaker: a speaker the lists hold out trains none of their other clips
        assert p.set_size("training") == 6
        assert not p.speakers("training") & {speakers[0], speakers[1]}
        assert len(p.noise_train) == 1


def test_official_test_layout_and_several_dirs(tmp_path, speech_commands):
    test = tmp_path / "test_set"
    for label, name in [("_silence_", "1024.wav"), ("_unknown_", "learn_aa11bb22_nohash_0.wav.wav"),
                        ("yes", "aa11bb22_nohash_0.wav")]:
        write_wav(test / label / name, tone(500))
    p = AudioProcessor(f"{speech_commands},{test}", silence_percentage=0, unknown_percentage=-1,
                       validation_percentage=0, testing_percentage=0)
    files = {it["file"]: it["label"] for it in p.data_index["training"]}
    assert files[str(test / "_silence_" / "1024.wav")] == SILENCE_LABEL
    assert files[str(test / "_unknown_" / "learn_aa11bb22_nohash_0.wav.wav")] == UNKNOWN_LABEL
    assert files[str(test / "yes" / "aa11bb22_nohash_0.wav")] == "yes"
    assert p.set_size("training") == 3 + 12 * 12


def test_list_test_clips_flat_and_labelled(tmp_path):
    for name in ("clip_b.wav", "clip_a.wav"):
        write_wav(tmp_path / "flat" / name, tone(400))
    paths, labels = list_test_clips(str(tmp_path / "flat"))
    assert [Path(p).name for p in paths] == ["clip_a.wav", "clip_b.wav"] and labels is None
    write_wav(tmp_path / "lab" / "yes" / "a.wav", tone(400))
    write_wav(tmp_path / "lab" / "_silence_" / "b.wav", tone(400))
    paths, labels = list_test_clips(str(tmp_path / "lab"))
    assert labels == ["_silence_", "yes"]
    with pytest.raises(UserError):
        list_test_clips(str(tmp_path / "missing"))


def test_augmentation_ranges():

    impulse = np.zeros((64, 16000), np.float32)
    impulse[:, 8000] = 0.5
    speech = np.zeros(64, bool)
    aug = Augmentation(time_shift_ms=50, time_shift_frequency=1.0, foreground_frequency=1.0,
                       foreground_volume_min=0.5, foreground_volume_max=2.0,
                       background_frequency=0.0)
    out = augment_batch(impulse, speech, 3, [], aug)
    assert np.array_equal(impulse[:, 8000], np.full(64, 0.5))  # the input is left alone
    peaks = np.abs(out).argmax(1)
    assert np.all(np.abs(peaks - 8000) <= 800) and len(set(peaks)) > 10
    gains = np.abs(out).max(1) / 0.5
    assert gains.min() >= 0.5 - 1e-5 and gains.max() <= 2.0 + 1e-5 and gains.std() > 0.1
    assert np.array_equal(out, augment_batch(impulse, speech, 3, [], aug))  # seed -> same batch
    noise = [np.ones(20000, np.float32)]
    aug = Augmentation(time_shift_ms=0, background_frequency=1.0, background_volume=0.1)
    silent = np.zeros((64, 16000), np.float32)
    levels = augment_batch(silent, speech, 4, noise, aug).max(1)
    assert levels.max() <= 0.1 and levels.std() > 0.01
    silence = augment_batch(silent, np.ones(64, bool), 5, noise, Augmentation())
    assert silence.max() <= 1.0 and silence.max(1).std() > 0.05
    clean = augment_batch(impulse, speech, 6, noise, None)
    assert np.array_equal(clean, impulse)  # evaluation: speech untouched


def test_shift_pads_or_rolls_and_scales():

    clip = np.arange(1, 6, dtype=np.int16)[None]
    expected = {(2, "pad"): [0, 0, 1, 2, 3], (-2, "pad"): [3, 4, 5, 0, 0],
                (-2, "roll"): [3, 4, 5, 1, 2], (2, "roll"): [4, 5, 1, 2, 3],
                (0, "pad"): [1, 2, 3, 4, 5], (0, "roll"): [1, 2, 3, 4, 5]}
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    for (shift, mode), values in expected.items():
        row = apply_augmentation(clip, one / 10, one, zero, np.int32([shift]), np.int32([0]),
                                 np.full(5, 9.0, np.float32), mode).numpy()[0]
        assert np.allclose(row, [v / 10 for v in values]), (shift, mode)
    noisy = apply_augmentation(clip, one / 10, one, one * 2, np.int32([0]), np.int32([2]),
                               np.arange(8, dtype=np.float32) / 10, "pad").numpy()[0]
    assert np.allclose(noisy, [0.5, 0.8, 1.0, 1.0, 1.0])  # noise from its start, then clipped


def test_noise_shorter_than_a_clip_repeats_within_its_recording():

    bank = NoiseBank([np.full(100, 0.25, np.float32), np.ones(20000, np.float32), []])
    assert len(bank) == 2 and list(bank.lengths) == [16000, 20000]
    aug = Augmentation(background_frequency=1.0, background_volume=1.0, time_shift_ms=0)
    out = augment_batch(np.zeros((64, 16000), np.float32), np.zeros(64, bool), 1, bank, aug)
    # each row's noise is one constant recording, never the short one running into the next
    assert (np.ptp(out, axis=1) < 1e-6).all() and (out[:, 0] > 0).sum() > 32


def test_validation_batches_are_clean_and_repeatable(speech_commands):
    p = AudioProcessor(str(speech_commands), silence_percentage=10, unknown_percentage=10,
                       validation_percentage=30, testing_percentage=0)
    first = [(x.numpy(), y.numpy()) for x, y in p.dataset("validation", 16)]
    second = [(x.numpy(), y.numpy()) for x, y in p.dataset("validation", 16)]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, second))
    x, y = p.get_data("validation")
    silence = y == 0
    assert silence.any() and np.abs(x[silence]).max() > 0  # eval silence carries held-out noise
    speech = ~silence
    files = [it["file"] for it in p.data_index["validation"] if it["file"]]
    from kws.audio import read_wav
    assert np.allclose(x[speech][0], read_wav(files[0]), atol=1e-4)


def test_pseudo_pool_is_drawn_with_its_frequency(speech_commands, tmp_path):
    pseudo = tmp_path / "pseudo"
    for i in range(20):
        write_wav(pseudo / "yes" / f"clip_{i:04x}.wav", np.full(16000, 0.77, np.float32))
    write_wav(pseudo / "_background_noise_" / "pseudo_silence.wav", tone(100, seconds=2))
    p = AudioProcessor(str(speech_commands), pseudo_dirs=[str(pseudo)], pseudo_frequency=0.5)
    assert len(p.noise_train) == 2
    n = p.set_size("training")
    assert p.steps_per_epoch(10) == int(np.ceil(np.ceil(n / 0.5) / 10))
    aug = Augmentation(background_frequency=0, time_shift_ms=0)
    x = np.concatenate([b[0].numpy() for b in p.dataset("training", 32, aug, epochs=1)])
    from_pseudo = np.isclose(x[:, 5000], 0.77, atol=1e-3).mean()
    assert 0.35 < from_pseudo < 0.65


def test_bad_files_are_skipped_with_one_warning(speech_commands, capsys):
    (speech_commands / "yes" / "deadbeef_nohash_0.wav").write_bytes(b"RIFF\x00\x00garbage")
    (speech_commands / "no" / "deadbeef_nohash_1.wav").write_bytes(b"")
    p = AudioProcessor(str(speech_commands), validation_percentage=0, testing_percentage=0)
    before = p.set_size("training")
    p._decode_all()
    assert p.set_size("training") == before - 2
    err = capsys.readouterr().err
    assert err.count("warning: skipped 2 unreadable") == 1 and "deadbeef" in err
    strict = AudioProcessor(str(speech_commands), strict=True)
    from kws.audio import AudioError
    with pytest.raises(AudioError):
        strict._decode_all()


def test_bad_arguments_are_user_errors(tmp_path, speech_commands):
    with pytest.raises(UserError):
        AudioProcessor(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError):
        AudioProcessor(str(tmp_path / "empty"))
    with pytest.raises(UserError):
        Augmentation(time_shift_mode="wrap")
    with pytest.raises(UserError, match="shorter than a clip"):
        Augmentation(time_shift_ms=1000)
    with pytest.raises(UserError):
        AudioProcessor(str(speech_commands), wanted_words="")


def test_real_test_set_counts(shared_data):
    p = AudioProcessor(str(shared_data / "speech_commands_test_v0.02_dev"), silence_percentage=0,
                       unknown_percentage=-1, validation_percentage=0, testing_percentage=0)
    counts = p.label_counts("training")
    assert counts == {"_silence_": 214, "_unknown_": 206, "yes": 219, "no": 228, "up": 230,
                      "down": 216, "left": 213, "right": 214, "on": 216, "off": 224,
                      "stop": 216, "go": 222}
    # the official test set is exactly the speakers whose tutorial hash says 'testing'
    tutorial = AudioProcessor(str(shared_data / "speech_commands_test_v0.02_dev"),
                              silence_percentage=0, unknown_percentage=-1)
    assert len(tutorial.speakers("testing")) == 118
    salted = AudioProcessor(str(shared_data / "speech_commands_test_v0.02_dev"),
                            silence_percentage=0, unknown_percentage=-1, split_salt="real",
                            validation_percentage=20, testing_percentage=20)
    sizes = [len(salted.speakers(w)) for w in ("training", "validation", "testing")]
    assert sum(sizes) == 118 and min(sizes) >= 15


def test_real_v001_sample_with_lists(shared_data):
    root = shared_data / "speech_commands_v0.01_sample"
    p = AudioProcessor(str(root), wanted_words="all", silence_percentage=0, unknown_percentage=-1)
    assert len(p.words_list) == 32
    present = {f"{w.parent.name}/{w.name}" for w in root.glob("*/*.wav")}
    val = len(present & set((root / "validation_list.txt").read_text().split()))
    test = len(present & set((root / "testing_list.txt").read_text().split()))
    assert val > 10 and test > 10
    assert p.set_size("validation") == val and p.set_size("testing") == test
    assert p.set_size("training") == 272 - val - test


def test_cli_prints_counts_and_fails_cleanly(speech_commands, tmp_path):
    run = [sys.executable, str(REPO / "input_data.py")]
    ok = subprocess.run(run + ["--data_dir", str(speech_commands)], capture_output=True,
                        text=True, cwd=REPO)
    assert ok.returncode == 0 and "yes" in ok.stdout and "speakers" in ok.stdout
    bad = subprocess.run(run + ["--data_dir", str(tmp_path / "nowhere")], capture_output=True,
                         text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_train_only_dirs_train_but_never_leak_held_out_speakers(tmp_path, speech_commands):
    p = AudioProcessor(str(speech_commands), validation_percentage=30, testing_percentage=30,
                       silence_percentage=0, unknown_percentage=0)
    held_out = sorted(p.speakers("validation") | p.speakers("testing"))
    extra = make_speech_commands(tmp_path / "extra", ["yes", "no"], [held_out[0], "feedf00d"])
    q = AudioProcessor(str(speech_commands), validation_percentage=30, testing_percentage=30,
                       silence_percentage=0, unknown_percentage=0, train_only_dirs=[str(extra)])
    extra_items = [it for it in q.data_index["training"] if str(extra) in it["file"]]
    assert {Path(it["file"]).name for it in extra_items} == {"feedf00d_nohash_0.wav"}
    assert len(extra_items) == 2
    assert q.set_size("validation") == p.set_size("validation")


def test_a_speaker_held_out_by_one_folder_trains_in_no_other_nor_in_a_pseudo_pool(
        tmp_path, speech_commands, capsys):
    listed = make_speech_commands(tmp_path / "listed", ["yes", "no"], ["0000beef", "feedf00d"],
                                  lists={"testing": ["feedf00d"]})
    pseudo = make_speech_commands(tmp_path / "pseudo", ["yes"], ["feedf00d", "0000cafe"],
                                  noise=False)
    # the hash folder trains feedf00d (no split salt, 10/10), the listed folder tests it
    assert which_set("feedf00d_nohash_0.wav", 10, 10) == "training"
    make_speech_commands(speech_commands, ["yes"], ["feedf00d"], noise=False)
    p = AudioProcessor(f"{speech_commands},{listed}", silence_percentage=0, unknown_percentage=0,
                       pseudo_dirs=[str(pseudo)], pseudo_frequency=0.5)
    assert "feedf00d" in p.held_out_speakers
    assert "feedf00d" not in p.speakers("training")
    assert "feedf00d" in p.speakers("testing")
    assert {speaker_id(Path(it["file"]).name) for it in p.pseudo_index} == {"0000cafe"}
    err = capsys.readouterr().err
    assert "training clips of held-out speakers left out" in err
    assert "1 pseudo clips of held-out speakers left out" in err


def test_held_out_speakers_count_those_whose_only_clips_were_not_sampled(tmp_path):
    speakers = [f"{i:08x}" for i in range(40)]
    data = make_speech_commands(tmp_path / "sc", ["yes", "cat"], speakers, noise=False)
    tested = [s for s in speakers if which_set(f"{s}_nohash_0.wav", 10, 10) == "testing"]
    # a testing speaker with only an unknown word, which unknown_percentage 0 never samples
    (data / "yes" / f"{tested[0]}_nohash_0.wav").unlink()
    p = AudioProcessor(str(data), wanted_words="yes", silence_percentage=0, unknown_percentage=0)
    assert tested[0] not in p.speakers("testing") and tested[0] in p.held_out_speakers


def test_int16_rows_augment_as_their_float_values_and_silence_gets_only_noise():

    rng = np.random.default_rng(1)
    ints = (rng.standard_normal((16, 16000)) * 4000).astype(np.int16)
    silence = np.arange(16) % 4 == 0
    floats = ints / np.float32(32767)
    floats[silence] = 0.0
    noise = [rng.standard_normal(40000).astype(np.float32) * 0.1]
    for mode in ("pad", "roll"):
        aug = Augmentation(foreground_frequency=1.0, speed_frequency=1.0, time_shift_mode=mode,
                           background_frequency=0.0, silence_volume=0.5)
        a = augment_batch(ints, silence, 7, noise, aug, scale=1 / 32767)
        b = augment_batch(floats, silence, 7, noise, aug)
        assert np.allclose(a, b, atol=1e-6), mode
        quiet = augment_batch(ints, silence, 7, [], aug, scale=1 / 32767)
        assert np.all(quiet[silence] == 0) and np.all(a[silence].std(1) > 0)
        assert np.abs(a).max() <= 1.0


def test_train_on_validation_adds_validation_but_never_testing(speech_commands):
    kwargs = dict(validation_percentage=30, testing_percentage=30, unknown_percentage=20)
    p = AudioProcessor(str(speech_commands), **kwargs)
    q = AudioProcessor(str(speech_commands), train_on_validation=True, **kwargs)
    assert q.data_index["training"] == p.data_index["training"] + p.data_index["validation"]
    assert q.speakers("training") == p.speakers("training") | p.speakers("validation")
    assert not q.speakers("training") & q.speakers("testing")
    assert q.data_index["validation"] == p.data_index["validation"]


def test_train_only_clips_of_validation_speakers_train_in_a_final_fit(tmp_path, speech_commands):
    kwargs = dict(validation_percentage=30, testing_percentage=30, silence_percentage=0,
                  unknown_percentage=0)
    p = AudioProcessor(str(speech_commands), **kwargs)
    validation, testing = sorted(p.speakers("validation")), sorted(p.speakers("testing"))
    extra = make_speech_commands(tmp_path / "extra", ["yes"], [validation[0], testing[0]])
    q = AudioProcessor(str(speech_commands), train_only_dirs=[str(extra)],
                       train_on_validation=True, **kwargs)
    names = {Path(it["file"]).name for it in q.data_index["training"] if str(extra) in it["file"]}
    assert names == {f"{validation[0]}_nohash_0.wav"}


def test_speed_change_scales_frequency():

    t = np.arange(16000) / 16000
    x = np.stack([np.sin(2 * np.pi * 440 * t)] * 3).astype(np.float32)

    def change_speed(factors):
        n = len(factors)
        return apply_augmentation(x[:n], np.ones(n, np.float32), np.float32(factors),
                                  np.zeros(n, np.float32), np.zeros(n, np.int32),
                                  np.zeros(n, np.int32), np.zeros(16000, np.float32)).numpy()

    y = change_speed([1.1, 0.9, 1.0])
    freqs = np.fft.rfftfreq(16000, 1 / 16000)
    peaks = [freqs[np.abs(np.fft.rfft(row[3000:13000], 16000)).argmax()] for row in y]
    assert abs(peaks[0] - 484) <= 2 and abs(peaks[1] - 396) <= 2
    assert np.array_equal(y[2], x[2])  # speed 1 leaves the clip as it is
    centre = np.arange(16000, dtype=np.float32) - 8000
    expected = np.interp(centre * np.float32(1.1) + 8000, np.arange(16000), x[0], 0.0, 0.0)
    assert np.allclose(y[0], expected, atol=1e-3)  # linear interpolation, as np.interp (to the
    # float32 rounding of the source position, which XLA may fuse into one multiply-add)
    fast = change_speed([1.25])
    assert np.all(fast[0, :100] == 0) and np.all(fast[0, -100:] == 0)  # zeros beyond the clip


def test_balance_words_draws_every_word_equally_often(tmp_path):
    """A corpus of 40 `down` clips and 4 `on` clips: balanced epochs draw both about equally
    (each about half the epoch); unbalanced
    epochs keep the corpus' 10:1."""
    root = make_speech_commands(tmp_path / "a", ["down"], [f"{i:08x}" for i in range(40)])
    make_speech_commands(tmp_path / "b", ["on"], [f"{i:08x}" for i in range(40, 44)],
                         noise=False)
    counts = {}
    for balance in (False, True):
        processor = AudioProcessor([str(root)], wanted_words="down,on", silence_percentage=0,
                                   unknown_percentage=0, validation_percentage=0,
                                   testing_percentage=0, train_only_dirs=[str(tmp_path / "b")],
                                   balance_words=balance)
        ds = processor.dataset("training", batch_size=11, seed=3, epochs=20)
        labels = np.concatenate([y.numpy() for _, y in ds])
        counts[balance] = np.bincount(labels, minlength=len(processor.words_list))
        rows = processor._rows_and_labels(processor.data_index["training"])
        if balance:
            weights = processor.balance_weights(rows[1])
            assert np.isclose(weights[rows[1] == processor.word_to_index["on"]].sum(),
                              weights[rows[1] == processor.word_to_index["down"]].sum())
        else:
            assert processor.balance_weights(rows[1]) is None
    down, on = (processor.word_to_index[w] for w in ("down", "on"))
    assert counts[False][down] == 10 * counts[False][on]
    assert 0.8 < counts[True][on] / counts[True][down] < 1.25
    assert counts[True].sum() == counts[False].sum() == 20 * 44
