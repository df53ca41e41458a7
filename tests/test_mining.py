"""Hard-negative mining (mine_negatives.py over kws.mining): the windows a model hears as a
command, one per misheard word, written as unknown-word clips, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from kws.audio import read_wav, write_wav
from kws.labels import COMPETITION_LABELS
from kws.mining import command_scores, hard_windows

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
                          (("--data_dir", tmp_path / "none"), "not found")]:
        done = run("--model", REPO / "models" / "edge_int8.tflite", "--out_dir", tmp_path / "o",
                   *args)
        assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1], \
            done.stderr
