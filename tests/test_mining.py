"""Hard-negative mining (mine_negatives.py over kws.mining): the windows a model hears as a
command, one per misheard word, written as unknown-word clips, and bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kws.audio import read_wav, write_wav
from kws.common import UserError
from kws.labels import COMPETITION_LABELS
from kws.mining import FOLDER, command_scores, hard_windows, mine, window_name

REPO = Path(__file__).resolve().parents[1]
RATE = 16000


class LoudIsYes:
    """A stand-in model: 'yes' with the window's peak amplitude as its probability."""

    def predict(self, window):
        probs = np.zeros(len(COMPETITION_LABELS), np.float32)
        probs[COMPETITION_LABELS.index("yes")] = float(np.abs(window).max())
        probs[COMPETITION_LABELS.index("_unknown_")] = 1 - probs.max()
        return probs


def recording(bursts, seconds=6.0):
    x = np.zeros(int(seconds * RATE), np.float32)
    for at, level in bursts:
        x[int(at * RATE):int(at * RATE) + 1600] = level
    return x


def test_one_window_per_misheard_word_above_the_threshold():
    x = recording([(1.0, 0.9), (3.5, 0.6), (5.0, 0.2)])
    starts, scores, words = command_scores(LoudIsYes(), COMPETITION_LABELS, x, hop=800)
    assert set(words) == {COMPETITION_LABELS.index("yes")}
    chosen = hard_windows(starts, scores, threshold=0.5)
    assert len(chosen) == 2  # the 0.2 burst stays under the threshold
    for i, at in zip(chosen, (1.0, 3.5)):
        assert starts[i] <= at * RATE < starts[i] + RATE
    assert np.all(np.diff([starts[i] for i in chosen]) >= RATE)
    short = command_scores(LoudIsYes(), COMPETITION_LABELS, np.full(400, 0.7, np.float32), 800)
    assert len(short[0]) == 1 and np.isclose(short[1][0], 0.7)


def mine_loud(paths, out_dir):
    return mine(LoudIsYes(), COMPETITION_LABELS, [str(p) for p in paths], 0.5, 800, str(out_dir))


def written(out_dir):
    """Every file and folder under out_dir, hidden ones (temporary folders) included."""
    return sorted(str(p.relative_to(out_dir)) for p in Path(out_dir).rglob("*"))


def test_recordings_of_one_name_in_different_folders_keep_their_own_windows(tmp_path):
    paths = []
    for folder in ("yes", "no"):  # Speech Commands: yes/X_nohash_0.wav and no/X_nohash_0.wav
        paths.append(tmp_path / folder / "X_nohash_0.wav")
        write_wav(paths[-1], recording([(0.5, 0.9), (3.0, 0.8)], seconds=4.0))
    rows, errors = mine_loud(paths, tmp_path / "out")
    assert errors == [] and len(rows) == 4
    files = [row["file"] for row in rows]
    assert len(set(files)) == 4
    assert sorted(files) == [f for f in written(tmp_path / "out") if f.endswith(".wav")]
    # deterministic, and the same wherever the tree lives
    assert window_name(str(paths[0]), 8000) == window_name("/elsewhere/yes/X_nohash_0.wav", 8000)
    assert window_name(str(paths[0]), 8000) != window_name(str(paths[1]), 8000)


def test_recordings_of_one_folder_and_name_deeper_in_the_tree_keep_their_own_windows(tmp_path):
    paths = [tmp_path / top / "x" / "long.wav" for top in ("a", "b")]
    for path in paths:
        write_wav(path, recording([(0.5, 0.9)], seconds=2.0))
    rows, errors = mine_loud(paths, tmp_path / "out")
    files = [row["file"] for row in rows]
    assert errors == [] and len(files) == 2 and len(set(files)) == 2
    assert sorted(files) == [f for f in written(tmp_path / "out") if f.endswith(".wav")]


def test_a_rerun_replaces_the_windows_of_the_last_one(tmp_path):
    first, second = tmp_path / "first.wav", tmp_path / "second.wav"
    write_wav(first, recording([(0.5, 0.9), (3.0, 0.8)], seconds=4.0))
    write_wav(second, recording([(1.0, 0.7)], seconds=2.0))
    out = tmp_path / "out"
    assert len(mine_loud([first], out)[0]) == 2
    rows, _ = mine_loud([second], out)
    assert written(out) == [FOLDER] + sorted(row["file"] for row in rows)
    assert len(rows) == 1
    # as kws/real.py calls it: into a folder it has just emptied
    shutil.rmtree(out)
    out.mkdir()
    rows, _ = mine_loud([first], out)
    assert written(out) == [FOLDER] + sorted(row["file"] for row in rows)


def test_not_one_readable_recording_is_an_error_and_keeps_the_last_run(tmp_path):
    good = tmp_path / "good.wav"
    write_wav(good, recording([(0.5, 0.9)], seconds=2.0))
    out = tmp_path / "out"
    rows, _ = mine_loud([good], out)
    before = written(out)
    (tmp_path / "bad.wav").write_bytes(b"RIFF junk")
    for paths in ([tmp_path / "missing.wav"], [tmp_path / "missing.wav", tmp_path / "bad.wav"]):
        with pytest.raises(UserError, match="no recording to mine could be read") as e:
            mine_loud(paths, out)
        assert "missing.wav" in str(e.value) and "\n" not in str(e.value)
        assert written(out) == before
    rows, errors = mine_loud([tmp_path / "bad.wav", good], out)  # one readable is enough
    assert len(errors) == 1 and len(rows) == 1


def run(*args):
    return subprocess.run([sys.executable, str(REPO / "mine_negatives.py"), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_script_writes_unknown_word_windows_and_a_list(tmp_path):
    rng = np.random.default_rng(3)
    write_wav(tmp_path / "talk.wav", rng.normal(0, 0.2, 4 * RATE).astype(np.float32))
    (tmp_path / "bad.wav").write_bytes(b"RIFF junk")
    out = tmp_path / "mined"
    done = run("--model", REPO / "models" / "edge_int8.tflite", "--wav", tmp_path / "talk.wav",
               "--wav", tmp_path / "bad.wav", "--threshold", "0.01", "--out_dir", out,
               "--metrics_json", tmp_path / "m.json")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((out / "mined.json").read_text())
    figures = json.loads((tmp_path / "m.json").read_text())
    assert figures["windows"] == len(rows) >= 1 and figures["unreadable"] == 1
    for row in rows:
        clip = read_wav(out / row["file"], num_samples=None)
        assert len(clip) == RATE and row["file"].startswith("hard_negative/")
        assert row["heard"] in COMPETITION_LABELS and row["score"] >= 0.01
    assert "skipped 1 unreadable recordings" in done.stderr


def test_a_checkpoint_mines_the_recordings_a_list_names(tmp_path):
    rng = np.random.default_rng(4)
    for n in range(2):
        write_wav(tmp_path / f"talk{n}.wav", rng.normal(0, 0.2, 2 * RATE).astype(np.float32))
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'talk0.wav'}\n\n{tmp_path / 'talk1.wav'}\n")
    checkpoint = REPO / "tests" / "fixtures" / "saved_models" / "seed195" / "last.keras"
    done = run("--model", checkpoint, "--wav_list", tmp_path / "list.txt", "--threshold",
               "0.01", "--hop_ms", "500", "--out_dir", tmp_path / "mined",
               "--metrics_json", tmp_path / "m.json")
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads((tmp_path / "m.json").read_text())
    rows = json.loads((tmp_path / "mined" / "mined.json").read_text())
    assert figures["recordings"] == 2 and figures["windows"] == len(rows) >= 2
    assert {Path(row["source"]).name for row in rows} == {"talk0.wav", "talk1.wav"}


def test_bad_input_is_one_line(tmp_path):
    for args, message in [((), "give --wav recordings, a --wav_list or --data_dir"),
                          (("--wav_list", tmp_path / "none.txt"), "--wav_list not found"),
                          (("--wav", tmp_path / "x.wav", "--threshold", "2"), "--threshold"),
                          (("--data_dir", tmp_path / "none"), "not found"),
                          (("--wav", tmp_path / "missing.wav"),
                           "no recording to mine could be read")]:
        done = run("--model", REPO / "models" / "edge_int8.tflite", "--out_dir", tmp_path / "o",
                   *args)
        assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1], \
            done.stderr
    assert not (tmp_path / "o" / "mined.json").exists()
