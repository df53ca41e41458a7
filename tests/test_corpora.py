"""The real corpora beside the dev clips (kws.corpora), on small generated stand-ins: the extra
speakers split by speaker for audio and pack images alike, other speech by phrase group,
running speech by speaker; missing manifest files are one named warning; negative streams
place every clip about equally often."""

import csv
import os

import numpy as np
import soundfile as sf

from kws import corpora
from kws.audio import read_wav
from kws.data import AudioProcessor
from kws.pack import Pack, parse_name
from kws.pack_data import pack_examples
from kws.stream_making import plan

RATE = 16000
WORDS = ["yes", "on", "dog"]


def opus(path, samples):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, RATE, format="OGG", subtype="OPUS")


def voice(seed, seconds=1.0, loud_at=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.01, int(seconds * RATE)).astype(np.float32)
    if loud_at is not None:
        start = int(loud_at * RATE)
        x[start:start + RATE // 2] += 0.3 * np.sin(np.arange(RATE // 2) / 5).astype(np.float32)
    return x


def write_manifest(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def fake_extra(shared, speakers):
    source = shared / "speech_commands_extra"
    rows = []
    for s, speaker in enumerate(speakers):
        for w, word in enumerate(WORDS):
            name = f"{word}/{speaker}_nohash_0.opus"
            opus(source / name, voice(s * 10 + w, loud_at=0.2))
            rows.append({"file": name, "word": word, "speaker": speaker, "source": "test"})
    rows.append({"file": "yes/gone_nohash_0.opus", "word": "yes", "speaker": "gone",
                 "source": "test"})
    write_manifest(source / "manifest.csv", rows)


def test_extra_speakers_split_by_speaker_for_audio_and_pack_alike(tmp_path, capsys):
    speakers = [f"{i:08x}" for i in range(30)]
    fake_extra(tmp_path / "shared", speakers)
    staged = corpora.stage_extra(str(tmp_path / "shared"), str(tmp_path / "extra"))
    assert "1 extra set manifest rows name missing files: yes/gone_nohash_0.opus" in \
        capsys.readouterr().err
    expected = {s: corpora.extra_split(s) for s in speakers}
    assert set(expected.values()) == {"training", "validation"}
    assert staged["speakers"] == {w: sum(v == w for v in expected.values())
                                  for w in ("training", "validation")}
    processor = AudioProcessor(staged["dir"], wanted_words="yes,on", silence_percentage=0,
                               unknown_percentage=-1)
    validation = processor.speakers("validation")
    assert validation == {s for s, w in expected.items() if w == "validation"}
    assert processor.speakers("training") == set(speakers) - validation
    assert not processor.data_index["testing"]
    # the pack's images of a validation speaker are left out with the audio; a speaker the
    # audio does not have trains
    names = [f"{w}/{s}_nohash_0.{w}.jpg" for s in speakers + ["ffffffff"] for w in ("yes", "on")]
    pack = Pack([parse_name(n) for n in names], np.zeros((len(names), 98, 40), np.uint8))
    images, labels = pack_examples(pack, processor.words_list,
                                   processor.speakers("testing") | validation)
    kept = {e.speaker for e in pack.entries} - validation
    assert len(images) == 2 * len(kept) and "ffffffff" in kept
    assert len(labels) == len(images)


def test_loudest_second_holds_the_speech():
    x = voice(1, seconds=3.0, loud_at=1.9)  # the burst: 1.9 to 2.4 s
    crop = corpora.loudest_second(x)
    starts = [t for t in range(0, len(x) - RATE + 1, RATE // 100)
              if np.array_equal(x[t:t + RATE], crop)]
    assert len(starts) == 1 and starts[0] <= 1.9 * RATE and starts[0] + RATE >= 2.4 * RATE
    np.testing.assert_array_equal(corpora.loudest_second(voice(2, 0.5)),
                                  np.pad(voice(2, 0.5), (0, RATE // 2)))


def test_other_speech_splits_by_phrase_and_reads_as_unknown(tmp_path):
    source = tmp_path / "shared" / "other_speech"
    rows = []
    phrases = ["alexa", "jarvis", "amelia", "computer"]
    for p, phrase in enumerate(phrases):
        for n in range(3):
            name = f"set/{phrase}/{n}.opus"
            opus(source / name, voice(p * 10 + n, seconds=2.5, loud_at=1.5))
            rows.append({"file": name, "phrase": phrase, "source": "test"})
    write_manifest(source / "manifest.csv", rows)
    folders = corpora.stage_other_speech(str(tmp_path / "shared"), str(tmp_path / "other"))
    found = {which: sorted(p.parent.name for p in (tmp_path / "other" / which).rglob("*.wav"))
             for which in folders}
    assert found == {"validation": ["other_alexa"] * 3, "testing": ["other_jarvis"] * 3,
                     "training": ["other_amelia"] * 3 + ["other_computer"] * 3}
    clip = read_wav(next((tmp_path / "other" / "training").rglob("*.wav")), num_samples=None)
    assert len(clip) == RATE and np.abs(clip).max() > 0.25  # the loud part, not the start
    processor = AudioProcessor(folders["training"], silence_percentage=0, unknown_percentage=-1,
                               validation_percentage=0, testing_percentage=0)
    assert processor.label_counts("training")["_unknown_"] == 6
    stamp = (tmp_path / "other" / "summary.json").stat().st_mtime_ns
    corpora.stage_other_speech(str(tmp_path / "shared"), str(tmp_path / "other"))
    assert (tmp_path / "other" / "summary.json").stat().st_mtime_ns == stamp  # reused


def test_running_speech_splits_by_speaker(tmp_path):
    source = tmp_path / "shared" / "running_speech" / "books"
    speakers = [str(100 + i) for i in range(12)]
    for s, speaker in enumerate(speakers):
        opus(source / speaker / f"{speaker}-1-0000.opus", voice(s, seconds=2.5))
    staged = corpora.stage_running_speech(str(tmp_path / "shared"), str(tmp_path / "running"))
    expected = {w: [s for s in speakers if corpora.running_split(s) == w]
                for w in ("training", "validation", "testing")}
    assert staged["speakers"] == {w: len(v) for w, v in expected.items()}
    windows = sorted(p.name for p in (tmp_path / "running" / "training").rglob("*.wav"))
    assert windows == sorted(f"{s}-1-0000_{k}.wav" for s in expected["training"] for k in (0, 1))
    for which in ("validation", "testing"):
        if expected[which]:
            assert sf.info(staged[which]).duration == 2.5 * len(expected[which])


def test_hard_negatives_are_mined_only_from_training_side_recordings(tmp_path):
    shared = tmp_path / "shared"
    rows = []
    for p, phrase in enumerate(["alexa", "jarvis", "amelia", "Computer"]):
        name = f"set/{phrase}/0.opus"
        opus(shared / "other_speech" / name, voice(p, seconds=2.0))
        rows.append({"file": name, "phrase": phrase, "source": "test"})
    write_manifest(shared / "other_speech" / "manifest.csv", rows)
    speakers = [str(100 + i) for i in range(12)]
    for s, speaker in enumerate(speakers):
        opus(shared / "running_speech" / "books" / speaker / f"{speaker}-1-0000.opus",
             voice(s, seconds=1.5))
    found = corpora.training_recordings(str(shared))
    trained = [s for s in speakers if corpora.running_split(s) == "training"]
    assert 0 < len(trained) < len(speakers)
    assert sorted(os.path.relpath(f, shared) for f in found) == sorted(
        [os.path.join("other_speech", "set", p, "0.opus") for p in ("amelia", "Computer")]
        + [os.path.join("running_speech", "books", s, f"{s}-1-0000.opus") for s in trained])


def test_negative_streams_place_every_clip_about_equally_often():
    labels = ["_unknown_"] * 5 + ["_unknown_"] * 50
    other = list(range(5, 55))
    rng = np.random.RandomState(0)
    even = plan(labels, rng, 300, 1000, True, 0.2, other, -1)
    half = plan(labels, np.random.RandomState(0), 300, 1000, True, 0.2, other, 0.5)
    assert max(np.bincount([i for i, _ in even])) <= 3
    assert max(np.bincount([i for i, _ in half])) >= 8
