"""make_submission.py --runner ray (Ray Data, local mode) against the single-process path: the
same four files byte for byte on a zoo model and a folder with unreadable clips; clip lists of
paths and file:// URIs; the benchmark's JSON; a missing engine in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tone

from kws.audio import write_wav
from kws.labels import COMPETITION_LABELS
from kws.zoo import build_model

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("s.csv", "s.probs.csv", "s.probs.u8", "s.probs.json")
UNREADABLE = ("corrupt.wav", "empty.wav")


def script(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CI="1")
    done = subprocess.run([sys.executable, str(REPO / "make_submission.py"), *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An (untrained) ds_cnn_s from the zoo: convolutions, batch norm, many threads' worth."""
    import keras

    keras.utils.set_random_seed(3)
    folder = tmp_path_factory.mktemp("engine_ckpt")
    net = build_model("ds_cnn_s", 12)
    net.save(folder / "m.keras")
    (folder / "labels.txt").write_text("\n".join(COMPETITION_LABELS) + "\n")
    return folder / "m.keras"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine_clips")
    rng = np.random.default_rng(1)
    for i in range(22):
        write_wav(folder / f"clip_{i:03d}.wav", tone(200 + 90 * i, seed=i) * rng.uniform(0.2, 1))
    (folder / "corrupt.wav").write_bytes(rng.bytes(3000))
    (folder / "empty.wav").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, checkpoint, clips):
    """The same folder through both runners (chunks of 5: five chunks over two actors)."""
    out = tmp_path_factory.mktemp("engine_out")
    common = ["--checkpoint", checkpoint, "--test_data", clips, "--chunk_size", "5",
              "--batch_size", "4", "--threads", "1"]
    local = script(*common, "--submission_fn", out / "local" / "s.csv")
    ray = script(*common, "--submission_fn", out / "ray" / "s.csv", "--runner", "ray",
                 "--workers", "2")
    return {"out": out, "local": local, "ray": ray}


def test_ray_data_writes_the_single_process_outputs_byte_for_byte(runs):
    out = runs["out"]
    for name in OUTPUTS:
        assert (out / "local" / name).read_bytes() == (out / "ray" / name).read_bytes(), name
    sidecar = json.loads((out / "ray" / "s.probs.json").read_text())
    assert sidecar["unreadable"] == sorted(UNREADABLE)
    assert sidecar["fnames"] == sorted(sidecar["fnames"])
    rows = (out / "ray" / "s.csv").read_text().splitlines()
    assert len(rows) == 1 + 24 and "corrupt.wav,silence" in rows
    for run in ("local", "ray"):
        warned = [ln for ln in runs[run].stderr.splitlines() if "unreadable clips" in ln]
        assert len(warned) == 1 and warned[0].startswith("warning: 2 unreadable"), warned
        assert "corrupt.wav: not readable audio" in warned[0]
        assert not (out / run / "s.csv.parts").exists()
        assert not [p for p in (out / run).iterdir() if ".part" in p.name]


def test_a_list_of_paths_and_file_uris_is_labelled_like_the_folder(tmp_path, runs, checkpoint,
                                                                    clips):
    names = sorted(os.listdir(clips))
    lines = [str(clips / n) if i % 2 else (clips / n).as_uri() for i, n in enumerate(names)]
    listing = tmp_path / "clips.txt"
    listing.write_text("# one clip a line\n" + "\n".join(reversed(lines)) + "\n\n")
    script("--checkpoint", checkpoint, "--test_list", listing, "--submission_fn",
           tmp_path / "s.csv", "--chunk_size", "5", "--batch_size", "4", "--threads", "1")
    from kws.probs import read_probs_u8

    fnames, _, probs = read_probs_u8(str(tmp_path / "s.probs.json"))
    assert fnames == sorted(lines)
    folder_fnames, _, folder_probs = read_probs_u8(str(runs["out"] / "local" / "s.probs.json"))
    by_name = dict(zip(folder_fnames, folder_probs))
    for fname, row in zip(fnames, probs):
        base = fname.rsplit("/", 1)[-1]
        np.testing.assert_array_equal(row, by_name[base])
    sidecar = json.loads((tmp_path / "s.probs.json").read_text())
    assert sorted(f.rsplit("/", 1)[-1] for f in sidecar["unreadable"]) == sorted(UNREADABLE)


def test_benchmark_json_gives_clips_per_second_of_either_runner(tmp_path, checkpoint, clips):
    for runner in ("local", "ray"):
        path = tmp_path / f"{runner}.json"
        script("--checkpoint", checkpoint, "--test_data", clips, "--benchmark", "30",
               "--benchmark_json", path, "--chunk_size", "10", "--runner", runner,
               "--threads", "1", *(["--workers", "1"] if runner == "ray" else []))
        result = json.loads(path.read_text())
        assert result["runner"] == runner and result["clips"] == 30
        assert result["clips_per_s"] > 0 and result["readable"] == 28  # the 24 clips, then 6 again
    assert not list(tmp_path.glob("*.csv"))


def test_a_missing_engine_is_one_line_and_writes_nothing(tmp_path, checkpoint, clips,
                                                          monkeypatch, capsys):
    import make_submission
    from kws.common import run_cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(SystemExit) as stop:
        run_cli(make_submission.main, ["--checkpoint", str(checkpoint), "--test_data",
                                       str(clips), "--submission_fn", str(tmp_path / "o" / "s.csv"),
                                       "--runner", "ray"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --runner ray needs Ray Data")
    assert "pip install 'ray[data]" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, fragment", [
    (["--workers", "2"], "need --runner ray"),
    (["--runner", "ray", "--workers", "-1"], "--workers must be >= 0"),
])
def test_engine_flags_are_checked_first(tmp_path, checkpoint, clips, flags, fragment, capsys):
    import make_submission
    from kws.common import run_cli

    with pytest.raises(SystemExit) as stop:
        run_cli(make_submission.main, ["--checkpoint", str(checkpoint), "--test_data",
                                       str(clips), "--submission_fn", str(tmp_path / "s.csv"),
                                       *flags])
    assert stop.value.code == 2 and fragment in capsys.readouterr().err


def test_a_list_that_names_a_clip_twice_or_none_is_refused(tmp_path, checkpoint, capsys):
    import make_submission
    from kws.common import run_cli

    for text, fragment in (("a.wav\na.wav\n", "listed twice"), ("# nothing\n", "no clips")):
        listing = tmp_path / "l.txt"
        listing.write_text(text)
        with pytest.raises(SystemExit):
            run_cli(make_submission.main, ["--checkpoint", str(checkpoint), "--test_list",
                                           str(listing), "--submission_fn",
                                           str(tmp_path / "s.csv")])
        assert fragment in capsys.readouterr().err
