"""generate_noise.py and make_synthetic_data.py: layout, format, split, determinism, errors."""

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import generate_noise
import make_synthetic_data as msd
from kws.audio import read_wav
from kws.common import UserError, run_cli
from kws.data import AudioProcessor
from kws.folders import SETS, speaker_id
from kws.noise import COLORS, PEAK_LIMIT, make_noise, psd_slope_db_per_octave
from kws.synthetic.espeak import (
    Espeak,
    espeak_data_path,
    find_english_voices,
    find_variants,
    probe_espeak,
)
from kws.synthetic.forking import run_in_child
from kws.synthetic.layout import STAMP_NAME
from kws.synthetic.plan import plan_test, plan_training, split_counts
from kws.synthetic.render import audible, fit_duration, render_clip, room_impulse, trim_silence
from kws.synthetic.speakers import (
    TEST_PITCHES,
    TEST_RATES,
    TRAIN_LENGTH_SCALES,
    TRAIN_PITCHES,
    PiperSpeaker,
    Speaker,
)

REPO = Path(__file__).resolve().parents[1]
WORDS = ["yes", "no", "cat"]
TINY = ["--words", ",".join(WORDS), "--speakers_per_word", "6", "--max_speakers", "12",
        "--validation_percentage", "20", "--testing_percentage", "20", "--test_clips", "24",
        "--test_speakers", "4", "--noise_seconds", "3", "--seed", "7", "--quiet"]
CLIP_NAME = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")


FAKE_PIPER = """
import dataclasses, json
import numpy as np

@dataclasses.dataclass
class SynthesisConfig:
    speaker_id: int = None
    length_scale: float = None
    noise_scale: float = None
    noise_w_scale: float = None

class _Chunk:
    def __init__(self, audio, rate):
        self.audio_float_array, self.sample_rate = audio, rate

class _Config:
    def __init__(self, d):
        self.sample_rate, self.num_speakers = d["audio"]["sample_rate"], d["num_speakers"]

class PiperVoice:
    def __init__(self, config):
        self.config = config

    @staticmethod
    def load(model_path):
        with open(str(model_path) + ".json") as f:
            return PiperVoice(_Config(json.load(f)))

    def synthesize(self, text, syn_config=None):
        assert syn_config.noise_scale == 0.0 and syn_config.noise_w_scale == 0.0
        rate = self.config.sample_rate
        n = int(rate * 0.1 * len(text) * syn_config.length_scale)
        f0 = 110 + 50 * syn_config.speaker_id  # a buzz: pitch by speaker, length by scale
        buzz = np.sign(np.sin(2 * np.pi * f0 * np.arange(n) / rate)) * np.hanning(n)
        yield _Chunk((0.5 * buzz).astype(np.float32), rate)
"""


def generate(out_dir, *extra, pythonpath=None):
    """Run the script as a user would; return (returncode, stdout, stderr)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run([sys.executable, str(REPO / "make_synthetic_data.py"),
                             "--out_dir", str(out_dir), *extra],
                            cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    return result.returncode, result.stdout, result.stderr


def file_hashes(root, skip=("README.md",)):
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def read_list(path):
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "data"
    rc, stdout, stderr = generate(out, *TINY)
    assert rc == 0, stderr
    return out


# ---- make_synthetic_data.py ---------------------------------------------------------------------
def test_layout(tiny):
    audio = tiny / "train" / "audio"
    assert sorted(p.name for p in audio.iterdir()) == sorted(WORDS + ["_background_noise_"])
    for word in WORDS:
        names = sorted(p.name for p in (audio / word).iterdir())
        assert len(names) == 6, word
        assert all(CLIP_NAME.match(n) for n in names), names
    noise = sorted(p.name for p in (audio / "_background_noise_").iterdir())
    assert noise == sorted(f"{c}_noise.wav" for c in COLORS)
    assert (tiny / "train" / "validation_list.txt").is_file()
    assert (tiny / "train" / "testing_list.txt").is_file()
    test_clips = sorted(p.name for p in (tiny / "test" / "audio").iterdir())
    assert len(test_clips) == 24
    assert all(re.match(r"^clip_[0-9a-f]{10}\.wav$", n) for n in test_clips)
    readme = (tiny / "README.md").read_text()
    for needle in ("espeak-ng", "seed 7", "--speakers_per_word 6", "en-us", "test/answers.csv"):
        assert needle in readme, needle


def test_clip_format(tiny):
    clips = sorted(tiny.glob("train/audio/*/*_nohash_*.wav")) + sorted(tiny.glob("test/audio/*"))
    assert len(clips) == 18 + 24
    for path in clips:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == \
            (16000, 1, 16000, "PCM_16"), path
    for path in tiny.glob("train/audio/*/*_nohash_*.wav"):
        samples = read_wav(path)
        assert 0.05 < np.max(np.abs(samples)) <= 1.0, path
        assert np.count_nonzero(samples) > 12000, path  # a noise floor, not digital silence
    for path in (tiny / "train" / "audio" / "_background_noise_").iterdir():
        info = sf.info(str(path))
        assert (info.samplerate, info.frames, info.subtype) == (16000, 48000, "PCM_16")


def test_split_is_by_speaker(tiny):
    on_disk = {f"{p.parent.name}/{p.name}" for p in tiny.glob("train/audio/*/*_nohash_*.wav")}
    validation = set(read_list(tiny / "train" / "validation_list.txt"))
    testing = set(read_list(tiny / "train" / "testing_list.txt"))
    training = on_disk - validation - testing
    assert validation and testing and training
    assert validation <= on_disk and testing <= on_disk and not validation & testing
    speakers = {name: {speaker_id(p) for p in items}
                for name, items in (("training", training), ("validation", validation),
                                    ("testing", testing))}
    assert not speakers["training"] & speakers["validation"]
    assert not speakers["training"] & speakers["testing"]
    assert not speakers["validation"] & speakers["testing"]
    for word in WORDS:  # 6 speakers per word split 4/1/1 at 20%/20%
        assert sum(p.startswith(word + "/") for p in validation) == 1
        assert sum(p.startswith(word + "/") for p in testing) == 1


def test_test_speakers_are_new():
    config = {"seed": 7, "max_speakers": 12, "validation_percentage": 20,
              "testing_percentage": 20, "speakers_per_word": 6, "words": WORDS, "repeats": 1,
              "reverb_probability": 0.5, "noise_probability": 0.3, "test_clips": 24,
              "test_speakers": 4, "test_words": ["yes", "no"], "aux_words": ["cat"],
              "unknown_words": ["learn", "follow"]}
    voices, variants = ["en-us", "en"], ["m1", "f2"]
    _, _, groups = plan_training(config, voices, variants)
    _, answers, test_speakers = plan_test(config, voices, variants)
    train_speakers = [s for group in groups.values() for s in group]
    assert len(train_speakers) == 12 and len(test_speakers) == 4
    assert not {s.id for s in train_speakers} & {s.id for s in test_speakers}
    assert all(s.pitch in TEST_PITCHES and s.rate in TEST_RATES for s in test_speakers)
    assert all(s.pitch in TRAIN_PITCHES for s in train_speakers)
    assert len(answers) == 24


def test_answers(tiny):
    with open(tiny / "test" / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["fname"] for r in rows] == sorted(p.name for p in (tiny / "test" / "audio").iterdir())
    counts = {}
    for r in rows:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    # test words default to the competition words among --words; cat is "unknown" there
    assert counts == {"yes": 4, "no": 4, "silence": 4, "unknown": 12}
    silence = [tiny / "test" / "audio" / r["fname"] for r in rows if r["label"] == "silence"]
    speech = [tiny / "test" / "audio" / r["fname"] for r in rows if r["label"] == "yes"]
    assert max(np.max(np.abs(read_wav(p))) for p in silence) < 0.5
    assert all(np.max(np.abs(read_wav(p))) > 0.05 for p in speech)


def test_audio_processor_reads_it(tiny):
    processor = AudioProcessor(str(tiny / "train"), wanted_words="yes,no", silence_percentage=50,
                               unknown_percentage=100, validation_percentage=0,
                               testing_percentage=0)
    counts = {mode: processor.label_counts(mode) for mode in SETS}
    assert counts["training"]["yes"] == 4 and counts["training"]["no"] == 4
    assert counts["validation"]["yes"] == 1 and counts["testing"]["no"] == 1
    assert counts["training"]["_unknown_"] == 4  # cat's training clips, capped at 100%
    assert counts["validation"]["_silence_"] == 1
    validation = set(read_list(tiny / "train" / "validation_list.txt"))
    for item in processor.data_index["validation"]:
        if item["file"]:
            assert "/".join(Path(item["file"]).parts[-2:]) in validation
    assert not processor.speakers("training") & processor.speakers("validation")
    assert len(processor.noise_train) == len(COLORS)


def test_same_seed_same_bytes_and_other_seed_differs(tiny, tmp_path):
    rc, _, stderr = generate(tmp_path / "again", *TINY, "--workers", "1")
    assert rc == 0, stderr
    first, again = file_hashes(tiny), file_hashes(tmp_path / "again")
    assert first == again
    rc, _, stderr = generate(tmp_path / "other", *(TINY[:-3] + ["--seed", "8", "--quiet"]))
    assert rc == 0, stderr
    other = file_hashes(tmp_path / "other")
    clips = [k for k in first if k.endswith(".wav")]
    assert sum(first[k] != other.get(k) for k in clips) == len(clips)


def test_rerun_resumes_and_other_flags_regenerate(tiny, tmp_path):
    out = tmp_path / "copy"
    rc, _, stderr = generate(out, *TINY)
    assert rc == 0, stderr
    expected = file_hashes(out)
    victims = sorted(out.glob("train/audio/yes/*.wav"))[:2] + sorted(out.glob("test/audio/*"))[:1]
    for path in victims:
        path.unlink()
    (out / "train" / "testing_list.txt").unlink()
    rc, stdout, stderr = generate(out, *TINY)
    assert rc == 0, stderr
    assert "wrote 3 of 42 clips" in stdout
    assert file_hashes(out) == expected
    rc, stdout, stderr = generate(out, *TINY)
    assert rc == 0 and "wrote 0 of 42 clips" in stdout
    # other words: the old run's files go, only the new ones stay
    rc, stdout, stderr = generate(out, *(["--words", "yes,no"] + TINY[2:]))
    assert rc == 0, stderr
    assert not (out / "train" / "audio" / "cat").exists()
    assert len(list(out.glob("train/audio/*/*_nohash_*.wav"))) == 12
    assert len(list(out.glob("test/audio/*.wav"))) == 24
    stamp = json.loads((out / STAMP_NAME).read_text())
    assert stamp["complete"] and stamp["config"]["words"] == ["yes", "no"]


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit) as e:
        run_cli(msd.main, ["--out_dir", str(tmp_path)] + TINY)
    assert e.value.code == 2
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("flags, message", [
    (["--voices", "xx"], "unknown voice"),
    (["--variants", "m1,nosuchvariant"], "unknown variant"),
    (["--words", ","], "empty word list"),
    (["--words", ""], "empty word list"),
    (["--words=yes,'"], "says nothing"),
    (["--words", "yes,../x"], "bad word"),
    (["--words", "yes,yes"], "repeated"),
    (["--words", "yes,unknown"], "are labels"),
    (["--speakers_per_word", "20", "--max_speakers", "10"], "cannot exceed"),
    (["--test_words", "stop", "--words", "yes"], "not in --words"),
    (["--noise_colors", "red"], "unknown noise colour"),
])
def test_bad_input_exits_2(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        run_cli(msd.main, ["--out_dir", str(tmp_path / "out"), "--quiet", *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_cli_error_is_one_line(tmp_path):
    rc, _, stderr = generate(tmp_path / "out", "--voices", "klingon")
    assert rc == 2
    assert stderr.strip().startswith("error: unknown voice(s) klingon")
    assert len(stderr.strip().splitlines()) == 1


@pytest.fixture
def piper_voice(tmp_path):
    """A stand-in `piper` package (the real one is an optional extra) and a 2-speaker voice."""
    (tmp_path / "fake" / "piper").mkdir(parents=True)
    (tmp_path / "fake" / "piper" / "__init__.py").write_text(FAKE_PIPER)
    model = tmp_path / "toy-voice.onnx"
    model.write_bytes(b"not a real model")
    (tmp_path / "toy-voice.onnx.json").write_text(
        json.dumps({"num_speakers": 2, "audio": {"sample_rate": 22050}}))
    return model, tmp_path / "fake"


def test_piper_voices_join_the_speakers(tmp_path, piper_voice):
    model, fake = piper_voice
    flags = TINY + ["--piper_voice", str(model), "--piper_share", "0.5"]
    rc, stdout, stderr = generate(tmp_path / "a", *flags, pythonpath=fake)
    assert rc == 0, stderr
    assert "1 Piper voice" in stdout
    assert "toy-voice.onnx" in (tmp_path / "a" / "README.md").read_text()
    piper_ids = {PiperSpeaker(str(model), n, scale).id for n in (0, 1)
                 for scale in TRAIN_LENGTH_SCALES}
    on_disk = {speaker_id(p) for p in (tmp_path / "a").glob("train/audio/*/*_nohash_*.wav")}
    assert on_disk & piper_ids and on_disk - piper_ids  # both engines speak
    for path in (tmp_path / "a").glob("train/audio/*/*_nohash_*.wav"):
        assert sf.info(str(path)).frames == 16000
    rc, _, stderr = generate(tmp_path / "b", *flags, pythonpath=fake)
    assert rc == 0, stderr
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")


def test_piper_voice_without_piper_exits_2(tmp_path, piper_voice):
    model, _ = piper_voice
    rc, _, stderr = generate(tmp_path / "out", *TINY, "--piper_voice", str(model))
    assert rc == 2 and "needs the piper-tts package" in stderr


def test_voices_and_variants_found():
    data = espeak_data_path()
    voices = find_english_voices(data)
    assert {"en", "en-us", "en-gb-x-rp", "en-029", "en-gb-scotland"} <= set(voices)
    assert {"m1", "m3", "f1", "f4", "croak", "whisper"} <= set(find_variants(data))
    probe = run_in_child(probe_espeak, ["en-us", "nosuchvoice"],
                             ["m3", "nosuchvariant"], ["yes", "-"])
    assert probe["sample_rate"] == 22050
    assert probe["voices"] == ["en-us"] and probe["variants"] == ["m3"]
    assert probe["silent_words"] == ["-"]


def _say_twice(voice, word):
    engine = Espeak()
    assert engine.set_voice(voice)
    return engine.synth(word, seed=1), engine.synth(word, seed=1)


def test_espeak_in_a_fresh_process_is_reproducible():
    first, second = run_in_child(_say_twice, "en-us+m3", "sheila")
    assert len(first) > 0.3 * 22050 and audible(first, 22050)
    again, _ = run_in_child(_say_twice, "en-us+m3", "sheila")
    assert np.array_equal(first, again)  # same history, same bytes


def test_speaker_ids_are_stable():
    speaker = Speaker("en-us", "m3", 50, 50, 175)
    assert speaker.id == "2ad1f471"  # sha1 of "espeak|en-us|m3|50|50|175": never changes
    assert speaker.espeak_name == "en-us+m3"
    assert Speaker("en-us", "", 50, 50, 175).espeak_name == "en-us"
    assert Speaker("en-us", "m3", 50, 50, 200).id != speaker.id


def test_clip_rendering():
    rate = 22050
    rng = np.random.default_rng(0)
    tone = np.sin(2 * np.pi * 220 * np.arange(int(0.4 * rate)) / rate)
    speech = np.concatenate([np.zeros(rate // 2), tone, np.zeros(rate // 2)])
    trimmed = trim_silence(speech, rate)
    assert 0.4 * rate <= len(trimmed) <= 0.45 * rate
    long_word = np.sin(np.arange(int(1.5 * 16000)) / 5.0)
    assert len(fit_duration(long_word, 15200)) == 15200
    options = {"reverb_probability": 1.0, "noise_probability": 1.0}
    clips = [render_clip(speech, rate, np.random.default_rng(s), options) for s in range(8)]
    assert all(c.shape == (16000,) and c.dtype == np.float32 for c in clips)
    assert all(np.max(np.abs(c)) <= 1.0 for c in clips)
    onsets = {int(np.argmax(np.abs(c) > 0.5 * np.max(np.abs(c)))) for c in clips}
    assert len(onsets) > 4  # random placement
    impulse = room_impulse(rng)
    assert impulse[0] == 1.0 and np.sum(impulse[1:] ** 2) < 0.16
    assert np.array_equal(render_clip(speech, rate, np.random.default_rng(3), options),
                          render_clip(speech, rate, np.random.default_rng(3), options))


def test_split_counts():
    assert split_counts(150, 10, 10) == (120, 15, 15)
    assert split_counts(6, 10, 10) == (4, 1, 1)
    assert split_counts(6, 0, 0) == (6, 0, 0)
    with pytest.raises(UserError):
        split_counts(4, 45, 45)


# ---- generate_noise.py --------------------------------------------------------------------------
@pytest.mark.parametrize("color, slope", [("white", 0.0), ("pink", -3.0), ("brown", -6.0),
                                          ("blue", 3.0), ("violet", 6.0)])
def test_noise_spectral_slope(color, slope):
    noise = make_noise(color, seconds=8, rms_db=-20, seed=1)
    measured = psd_slope_db_per_octave(noise)
    assert abs(measured - slope) < 0.5, (color, measured)
    assert abs(20 * np.log10(np.sqrt(np.mean(noise.astype(np.float64) ** 2))) + 20) < 0.1
    assert np.max(np.abs(noise)) <= PEAK_LIMIT


def test_dataset_noise_files_have_their_colour(tiny):
    folder = tiny / "train" / "audio" / "_background_noise_"
    for color, beta in COLORS.items():
        noise = read_wav(folder / f"{color}_noise.wav", num_samples=None)
        slope = psd_slope_db_per_octave(noise)
        assert abs(slope - 3.01 * beta) < 0.7, (color, slope)


def test_noise_cli_deterministic(tmp_path, capsys):
    run = ["--seconds", "2", "--seed", "5", "--rms_db", "-30"]
    generate_noise.main(["--out_dir", str(tmp_path / "a")] + run)
    generate_noise.main(["--out_dir", str(tmp_path / "b"), "--colors", "pink,white"] + run)
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    assert sorted(a) == sorted(f"{c}_noise.wav" for c in COLORS)
    assert b == {k: a[k] for k in ("pink_noise.wav", "white_noise.wav")}
    generate_noise.main(["--out_dir", str(tmp_path / "c"), "--seconds", "2", "--seed", "6"])
    assert file_hashes(tmp_path / "c")["pink_noise.wav"] != a["pink_noise.wav"]
    pink = read_wav(tmp_path / "a" / "pink_noise.wav", num_samples=None)
    assert len(pink) == 32000
    assert abs(20 * np.log10(np.sqrt(np.mean(pink.astype(np.float64) ** 2))) + 30) < 0.2
    assert not list(tmp_path.rglob("*.part*"))  # atomic writes leave no temp files


@pytest.mark.parametrize("flags", [["--colors", "red"], ["--colors", ","], ["--seconds", "0"],
                                   ["--rms_db", "3"], ["--seconds", "x"]])
def test_noise_bad_input_exits_2(tmp_path, flags):
    with pytest.raises(SystemExit) as e:
        run_cli(generate_noise.main, ["--out_dir", str(tmp_path)] + flags)
    assert e.value.code == 2


def test_loud_noise_is_not_clipped():
    noise = make_noise("violet", seconds=1, rms_db=-1, seed=0)
    assert np.max(np.abs(noise)) <= PEAK_LIMIT
