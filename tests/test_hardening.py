"""Hardening: bad clips and folders, killed runs, unsafe checkpoints, one-line CLI errors.

Every check runs the real scripts as subprocesses on tiny generated data. The one-line-error
cases of every script (section 4) start in two background threads with the module's first test,
so they overlap the training and labelling runs of sections 1-3.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_speech_commands, tone

from kws.audio import write_wav
from kws.checkpoint import load_checkpoint
from kws.data import AudioProcessor
from kws.export import tflite_bytes
from kws.folders import SETS

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CI="1")
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "cat", "dog"]
# stderr lines that TensorFlow / LiteRT print on their own, whatever the log level
RUNTIME_NOISE = ("I0000", "W0000", "E0000", "WARNING: All log messages", "INFO: Created TensorFlow")

READABLE = ["flac_inside.wav", "good.wav", "long3s.wav", "rate44k.wav", "rate8k.wav",
            "short02.wav", "stereo.wav", 'with, comma "quoted".wav', "ünïcödé.wav"]
UNREADABLE = ["corrupt.wav", "empty.wav", "text.wav", "truncated.wav"]
NOT_UTF8 = os.fsdecode(b"latin1_\xe9.wav")
IGNORED = [".hidden.wav", NOT_UTF8]  # hidden and non-UTF-8 names are passed over, with a warning


def script(name, *args, env=None, timeout=300, **popen):
    """Run (or with popen kwargs, start) REPO/name as a user would."""
    cmd = [sys.executable, str(REPO / name), *map(str, args)]
    env = dict(ENV, **(env or {}))
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def own_lines(stderr):
    return [ln for ln in stderr.strip().splitlines() if ln and not ln.startswith(RUNTIME_NOISE)]


def assert_one_line_error(done, *fragments):
    """Exit code 2, no traceback, and the last stderr line is `error: ...` or argparse's."""
    lines = own_lines(done.stderr)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    last = lines[-1] if lines else ""
    assert last.startswith("error: ") or ": error: " in last, done.stderr[-2000:]
    for fragment in fragments:
        assert fragment in last, (fragment, last)


def write_bad_clips(folder):
    """Every kind of bad or odd file a user's folder holds, beside one plain good clip."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / "good.wav", tone(450))
    whole = (folder / "good.wav").read_bytes()
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(5).bytes(3000))
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("this is not audio\n")
    (folder / "truncated.wav").write_bytes(whole[:len(whole) // 3])  # a half-copied file
    sf.write(folder / "stereo.wav", np.stack([tone(600), tone(750)], 1), 16000, subtype="PCM_16")
    sf.write(folder / "rate8k.wav", tone(300, rate=8000), 8000, subtype="PCM_16")
    sf.write(folder / "rate44k.wav", tone(900, rate=44100), 44100, subtype="PCM_16")
    sf.write(folder / "long3s.wav", tone(1050, seconds=3), 16000, subtype="PCM_16")
    sf.write(folder / "short02.wav", tone(1200, seconds=0.2), 16000, subtype="PCM_16")
    sf.write(folder / "flac_inside.wav", tone(600), 16000, format="FLAC")
    (folder / "notes.txt").write_text("recorded on monday\n")
    for name in ('with, comma "quoted".wav', "ünïcödé.wav", ".hidden.wav"):
        (folder / name).write_bytes(whole)
    with open(os.path.join(os.fsencode(folder), os.fsencode(NOT_UTF8)), "wb") as f:
        f.write(whole)
    (folder / "__MACOSX").mkdir(exist_ok=True)
    (folder / "__MACOSX" / "._good.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    return folder


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# ---- the one-line-error cases of every script, started at once in the background ----------------
def make_cli_case_files(tmp):
    """The inputs cli_cases refers to: an empty folder, a tiny dataset, small CSVs, a file."""
    (tmp / "empty").mkdir()
    make_speech_commands(tmp / "sc", ["yes", "no"], ["aaaa0001", "aaaa0002"], noise=False)
    (tmp / "p.probs.csv").write_text("fname,_silence_,_unknown_\na.wav,0.1,0.9\n")
    (tmp / "header.probs.csv").write_text("fname,_silence_,_unknown_\n")
    (tmp / "a_file.txt").write_text("x")
    (tmp / "a_file.tflite").write_text("x")


def cli_cases(tmp):
    """{case id: (script, args, text the error line must hold)}: a missing path, an empty
    folder where one is read, and a bad flag value, for every script at the repository root."""
    missing, empty, data = tmp / "missing", tmp / "empty", tmp / "sc"
    probs, header_only, a_file = tmp / "p.probs.csv", tmp / "header.probs.csv", tmp / "a_file.txt"
    sub = ["--submission_fn", tmp / "out" / "s.csv"]
    run_dirs = ["--checkpoint_dir", tmp / "ck", "--log_dir", tmp / "logs"]
    return {
        "input_data-missing": ("input_data.py", ["--data_dir", missing], "not found"),
        "input_data-empty": ("input_data.py", ["--data_dir", empty], "no word folders"),
        "input_data-bad": ("input_data.py", ["--data_dir", data, "--validation_percentage",
                                             "150"], "validation_percentage"),
        "model-missing": ("model.py", ["--checkpoint", missing / "m.keras"], "not found"),
        "model-bad": ("model.py", ["--num_classes", "1"], "num_classes"),
        "train-missing": ("train.py", ["--data_dir", missing, *run_dirs], "not found"),
        "train-empty": ("train.py", ["--data_dir", empty, *run_dirs], "no word folders"),
        "train-bad": ("train.py", ["--data_dir", data, "--batch_size", "0", *run_dirs],
                      "--batch_size"),
        "train-bad-tf-config": ("train.py", ["--data_dir", data, "--strategy", "multi_worker",
                                             *run_dirs], "needs the TF_CONFIG"),
        "generate_noise-missing": ("generate_noise.py", ["--out_dir", a_file / "noise"],
                                   "Not a directory"),
        "generate_noise-bad": ("generate_noise.py", ["--out_dir", tmp / "n", "--seconds", "-1"],
                               "--seconds"),
        "make_synthetic_data-missing": ("make_synthetic_data.py", ["--out_dir", a_file],
                                        "not a folder"),
        "make_synthetic_data-bad": ("make_synthetic_data.py", ["--out_dir", tmp / "syn",
                                                               "--speakers_per_word", "0"],
                                    "--speakers_per_word"),
        "make_submission-missing-data": ("make_submission.py", ["--checkpoint", missing / "m.keras",
                                                                "--test_data", missing, *sub],
                                         "not found"),
        "make_submission-missing-checkpoint": ("make_submission.py",
                                               ["--checkpoint", missing / "m.keras",
                                                "--test_data", data / "yes", *sub],
                                               "checkpoint not found"),
        "make_submission-empty": ("make_submission.py", ["--checkpoint", missing / "m.keras",
                                                         "--test_data", empty, *sub],
                                  "no audio clips"),
        "make_submission-bad": ("make_submission.py", ["--checkpoint", missing / "m.keras",
                                                       "--test_data", data, "--chunk_size", "0",
                                                       *sub], "--chunk_size"),
        "make_submission-bad-runner": ("make_submission.py", ["--checkpoint", missing / "m.keras",
                                                              "--test_data", data, "--workers",
                                                              "2", *sub], "need --runner ray"),
        "make_submission-missing-list": ("make_submission.py",
                                         ["--checkpoint", missing / "m.keras", "--test_list",
                                          missing / "clips.txt", *sub], "test list not found"),
        "convert_to_12_classes-missing": ("convert_to_12_classes.py",
                                          ["--probs", missing / "p.csv", *sub], "not found"),
        "convert_to_12_classes-empty": ("convert_to_12_classes.py",
                                        ["--probs", header_only, *sub], "no rows"),
        "convert_to_12_classes-bad": ("convert_to_12_classes.py",
                                      ["--probs", probs, "--unknown_mode", "avg", *sub],
                                      "--unknown_mode"),
        "ensemble-missing": ("ensemble.py", ["--probs", probs, missing / "p.csv", *sub],
                             "not found"),
        "ensemble-bad": ("ensemble.py", ["--probs", probs, probs, "--weights", "a,b", *sub],
                         "--weights"),
        "create_pseudo_with_thresh-missing": ("create_pseudo_with_thresh.py",
                                              ["--inputs", probs, "--test_data", missing,
                                               "--out_dir", tmp / "ps"], "not found"),
        "create_pseudo_with_thresh-empty": ("create_pseudo_with_thresh.py",
                                            ["--inputs", probs, "--test_data", empty,
                                             "--out_dir", tmp / "ps"], "could be read"),
        "create_pseudo_with_thresh-bad": ("create_pseudo_with_thresh.py",
                                          ["--inputs", probs, "--test_data", data, "--out_dir",
                                           tmp / "ps", "--threshold", "2"], "--threshold"),
        "freeze_graph-missing": ("freeze_graph.py", ["--checkpoint_path", missing / "m.keras",
                                                     "--frozen_path", tmp / "f" / "m.pb"],
                                 "not found"),
        "freeze_graph-bad": ("freeze_graph.py", ["--checkpoint_path", missing / "m.keras",
                                                 "--num_check", "0"], "--num_check"),
        "make_submission_on_rpi-missing-model": ("make_submission_on_rpi.py",
                                                 ["--frozen_graph", missing / "m.tflite",
                                                  "--test_data", data, *sub], "not found"),
        "make_submission_on_rpi-missing-data": ("make_submission_on_rpi.py",
                                                ["--frozen_graph", missing / "m.tflite",
                                                 "--test_data", missing, *sub], "not found"),
        "make_submission_on_rpi-empty": ("make_submission_on_rpi.py",
                                         ["--frozen_graph", missing / "m.tflite",
                                          "--test_data", empty, *sub], "no audio clips"),
        "make_submission_on_rpi-bad": ("make_submission_on_rpi.py",
                                       ["--frozen_graph", missing / "m.tflite", "--test_data",
                                        data, "--threads", "0", *sub], "--threads"),
        "benchmark-missing": ("benchmark.py", [missing / "m.keras"], "not found"),
        "benchmark-empty": ("benchmark.py", [a_file.with_suffix(".tflite"), "--accuracy_data",
                                             empty], "no audio clips"),
        "benchmark-bad": ("benchmark.py", ["--runs", "0", missing / "m.keras"], "--runs"),
        "download_data-missing": ("download_data.py",
                                  ["--url", (missing / "a.tar.gz").as_uri(), "--retries", "0",
                                   "--out_dir", tmp / "dl", "--no_progress"],
                                  "No such file"),
        "download_data-bad": ("download_data.py", ["--size", "-1", "--out_dir", tmp / "dl"],
                              "--size"),
        "demo-missing": ("demo.py", ["--config", missing / "c.json", "--data_dir", tmp / "d"],
                         "not found"),
        "demo-bad": ("demo.py", ["--config", REPO / "experiments" / "smoke.json", "--data_dir",
                                 tmp / "d", "--out_dir", tmp / "d_out", "--synthetic_args",
                                 "--speakers_per_word 0"], "failed with exit code 2"),
        "real-missing": ("real.py", ["--shared", missing, "--out_dir", tmp / "r"], "not found"),
        "real-empty": ("real.py", ["--shared", empty, "--out_dir", tmp / "r"], "not found"),
        "real-bad": ("real.py", ["--shared", data, "--cap_minutes", "0"], "--cap_minutes"),
        "real-two-teachers": ("real.py", ["--models", "teacher,edge", "--teacher_checkpoint",
                                          missing], "--teacher_checkpoint needs one of edge"),
        "real-frozen": ("real.py", ["--models", "edge", "--frozen", "teacher"],
                        "--frozen teacher is not among --models"),
        "real-no-teacher": ("real.py", ["--models", "edge", "--teacher_checkpoint", missing],
                            "--teacher_checkpoint not found"),
        "make_streams-missing": ("make_streams.py",
                                        ["--data_dir", missing, "--noise_dir", data, "--out",
                                         tmp / "s.wav"], "not found"),
        "make_streams-bad": ("make_streams.py",
                                    ["--data_dir", data, "--noise_dir", data, "--minutes", "0",
                                     "--out", tmp / "s.wav"], "--minutes"),
        "recognize_commands-missing": ("recognize_commands.py", ["--model", missing / "m.tflite"],
                                       "not found"),
        "recognize_commands-bad": ("recognize_commands.py",
                                   ["--model", missing / "m.tflite", "--seconds", "0"],
                                   "--seconds"),
        "label_stream-missing": ("label_stream.py", ["--model", missing / "m.tflite", "--wav",
                                                     missing / "s.wav"], "not found"),
        "label_stream-bad": ("label_stream.py", ["--model", missing / "m.tflite", "--raw", "-",
                                                 "--rate", "8000"], "must be 16000 Hz"),
        "streaming_accuracy-missing": ("streaming_accuracy.py",
                                       ["--model", missing / "m.tflite", "--wav",
                                        missing / "s.wav"], "not found"),
        "streaming_accuracy-bad": ("streaming_accuracy.py",
                                   ["--model", missing / "m.tflite", "--wav", missing / "s.wav",
                                    "--save_settings"], "--save_settings needs --sweep"),
        "make_pi_bundle-missing": ("make_pi_bundle.py", ["--model", missing / "m.tflite",
                                                         "--out_dir", tmp / "dist"], "not found"),
        "make_pi_bundle-bad": ("make_pi_bundle.py", ["--model", a_file, "--out_dir",
                                                     tmp / "dist"], ".tflite"),
        "summarize_seeds-missing": ("summarize_seeds.py", [missing / "results.json"],
                                    "results not found"),
        "summarize_seeds-bad": ("summarize_seeds.py", [a_file], "not a results.json"),
        "arm_check-missing": ("arm_check.py", ["--clips", missing, "--work_dir", tmp / "arm"],
                              "not found"),
        "arm_check-bad": ("arm_check.py", ["--num_clips", "0"], "--num_clips"),
        "serve-missing": ("serve.py", ["--model", missing / "m.tflite"], "model not found"),
        "serve-bad": ("serve.py", ["--port", "-1"], "--port"),
        "benchmark_serve-missing": ("benchmark_serve.py", ["--model", missing / "m.tflite"],
                                    "model not found"),
        "benchmark_serve-bad": ("benchmark_serve.py", ["--listeners", "0"], "listener counts"),
        "fit_frontend-missing": ("fit_frontend.py", ["--dev_dir", missing], "not found"),
        "fit_frontend-bad": ("fit_frontend.py", ["--log_offsets", "-1"], "log offsets"),
        "mine_negatives-missing": ("mine_negatives.py", ["--model", missing / "m.tflite",
                                                         "--wav", a_file, "--out_dir",
                                                         tmp / "mined"], "model not found"),
        "mine_negatives-bad": ("mine_negatives.py", ["--model", missing / "m.tflite", "--wav",
                                                     a_file, "--out_dir", tmp / "mined",
                                                     "--hop_ms", "0"], "--hop_ms"),
    }


ROOT_SCRIPTS = ["input_data.py", "model.py", "train.py", "generate_noise.py",
                "make_synthetic_data.py", "make_submission.py", "convert_to_12_classes.py",
                "ensemble.py", "create_pseudo_with_thresh.py", "freeze_graph.py",
                "make_submission_on_rpi.py", "benchmark.py", "download_data.py", "demo.py",
                "real.py", "make_streams.py", "recognize_commands.py", "label_stream.py",
                "streaming_accuracy.py", "serve.py", "benchmark_serve.py", "fit_frontend.py",
                "make_pi_bundle.py", "arm_check.py", "mine_negatives.py", "summarize_seeds.py"]
CASE_IDS = list(cli_cases(Path("/nonexistent")))  # the table only names paths


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Futures of every CLI case, running two at a time while the other tests go on."""
    tmp = tmp_path_factory.mktemp("cli")
    make_cli_case_files(tmp)
    cases = cli_cases(tmp)
    pool = ThreadPoolExecutor(2)
    futures = {case: pool.submit(script, name, *args) for case, (name, args, _) in cases.items()}
    yield cases, futures, tmp
    pool.shutdown(wait=True)


def test_every_root_script_has_cli_cases(cli_results):
    """(Asking for cli_results starts the cases in the background, to overlap what follows.)"""
    scripts = sorted(p.name for p in REPO.glob("*.py")
                     if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8"))
    assert scripts == sorted(ROOT_SCRIPTS), "a new script needs one-line-error cases here"
    for name in ROOT_SCRIPTS:
        stem = name[:-3]
        assert f"{stem}-bad" in CASE_IDS, name
        assert any(c.startswith(f"{stem}-missing") for c in CASE_IDS), name


# ---- 1. bad clips and folders --------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """train.py (smoke recipe) on a dataset full of bad clips, odd names and wrong folders."""
    tmp = tmp_path_factory.mktemp("badtrain")
    data = make_speech_commands(tmp / "sc", WORDS, [f"{i:08x}" for i in range(12)])
    write_bad_clips(data / "yes")
    shutil.copytree(data / "no", data / "Yes ")  # a word folder of the wrong name
    (data / "__MACOSX" / "yes").mkdir(parents=True)
    (data / "__MACOSX" / "yes" / "._good.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (data / "__MACOSX" / "._yes.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (data / "README.txt").write_text("not a folder of clips\n")
    done = script("train.py", "--config", REPO / "experiments" / "smoke.json", "--data_dir", data,
                  "--checkpoint_dir", tmp / "ck", "--log_dir", tmp / "logs", "--epochs", "1")
    return {"done": done, "data": data, "checkpoint": tmp / "ck" / "smoke" / "last.keras",
            "labels": tmp / "ck" / "smoke" / "labels.txt", "tmp": tmp}


def test_training_skips_and_reports_bad_clips_and_folders(trained):
    done, data = trained["done"], trained["data"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert trained["checkpoint"].exists()
    err = done.stderr
    assert err.count("warning: skipped 4 unreadable files") == 1, err[-3000:]
    for name in ("corrupt.wav", "empty.wav", "text.wav"):
        assert name in err  # the first three are named
    ignored = [ln for ln in own_lines(err) if ln.startswith("warning: ignored 3 hidden")]
    assert len(ignored) == 1 and "__MACOSX" in ignored[0] and ".hidden.wav" in ignored[0]
    assert "latin1_\\udce9.wav" in ignored[0]
    assert "warning: folder 'Yes '" in err and "count as _unknown_" in err

    # What training actually uses: every readable clip, none of the others.

    processor = AudioProcessor(str(data), silence_percentage=10, unknown_percentage=20)
    processor._decode_all()  # what the first dataset() call does: drops unreadable clips
    used = {it["file"] for s in SETS for it in processor.data_index[s] if it["file"]}
    yes = {os.path.basename(f) for f in used if os.path.dirname(f) == str(data / "yes")}
    assert set(READABLE) <= yes
    assert not (set(UNREADABLE) | set(IGNORED)) & yes
    assert not [f for f in used if "__MACOSX" in f]


@pytest.fixture(scope="module")
def tflite(trained):
    """The trained checkpoint as a float .tflite (tflite_bytes) with its labels beside."""

    keras_model, _ = load_checkpoint(trained["checkpoint"])
    out = trained["tmp"] / "tf_files"
    out.mkdir()
    (out / "edge.tflite").write_bytes(tflite_bytes(keras_model))
    shutil.copy(trained["labels"], out / "edge_labels.txt")
    return out / "edge.tflite"


@pytest.fixture(scope="module")
def bad_folder_runs(trained, tflite):
    """make_submission.py and make_submission_on_rpi.py on a flat folder of bad and odd clips
    (and the Pi script once more on the same folder without the non-UTF-8 name)."""
    tmp = trained["tmp"]
    test = write_bad_clips(tmp / "bad_test")
    test_utf8 = tmp / "bad_test_utf8"
    shutil.copytree(test, test_utf8)
    os.remove(os.path.join(os.fsencode(test_utf8), os.fsencode(NOT_UTF8)))
    with ThreadPoolExecutor(3) as pool:
        sub = pool.submit(script, "make_submission.py", "--checkpoint", trained["checkpoint"],
                          "--test_data", test, "--submission_fn", tmp / "out" / "sub.csv",
                          "--chunk_size", "5")
        rpi_all = pool.submit(script, "make_submission_on_rpi.py", "--frozen_graph", tflite,
                              "--test_data", test, "--submission_fn", tmp / "out" / "rpi_all.csv")
        rpi = pool.submit(script, "make_submission_on_rpi.py", "--frozen_graph", tflite,
                          "--test_data", test_utf8, "--submission_fn", tmp / "out" / "rpi.csv")
        return {"sub": sub.result(), "rpi_all": rpi_all.result(), "rpi": rpi.result(),
                "out": tmp / "out"}


def test_make_submission_labels_readable_clips_and_lists_unreadable_ones(bad_folder_runs):
    done, out = bad_folder_runs["sub"], bad_folder_runs["out"]
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(out / "sub.csv")
    assert rows[0] == ["fname", "label"]
    labels = dict(rows[1:])
    assert sorted(labels) == sorted(READABLE + UNREADABLE)  # a row per clip, odd names intact
    assert all(labels[name] == "silence" for name in UNREADABLE)
    sidecar = json.loads((out / "sub.probs.json").read_text())
    assert sidecar["unreadable"] == sorted(UNREADABLE)
    probs = read_csv(out / "sub.probs.csv")
    assert len(probs) == 1 + len(READABLE) + len(UNREADABLE)
    for row in probs[1:]:
        assert abs(sum(map(float, row[1:])) - 1) < 1e-3, row
    err = own_lines(done.stderr)
    warned = [ln for ln in err if "unreadable clips labelled silence" in ln]
    assert len(warned) == 1 and warned[0].startswith("warning: 4 unreadable"), err
    assert "corrupt.wav: not readable audio" in warned[0]  # the decoder's reason, not just a name
    assert not [ln for ln in err if ln.startswith("warning: skipped")]  # said once, at the end
    ignored = [ln for ln in err if ln.startswith("warning: ignored 2 hidden")]
    assert len(ignored) == 1 and ".hidden.wav" in ignored[0] and "latin1_" in ignored[0]
    assert not (out / "sub.csv.parts").exists()


def test_rpi_labels_the_same_folder_and_calls_unreadable_clips_silence(bad_folder_runs):
    """The Pi script on the bad folder (minus the non-UTF-8 name, see the next test): a row for
    every .wav, silence for every clip make_submission could not read, and one warning line."""
    done, out = bad_folder_runs["rpi"], bad_folder_runs["out"]
    assert done.returncode == 0, done.stderr[-3000:]
    rows = dict(read_csv(out / "rpi.csv")[1:])
    assert set(READABLE + UNREADABLE) <= set(rows)
    assert all(rows[name] == "silence" for name in UNREADABLE)
    warned = [ln for ln in own_lines(done.stderr) if "unreadable clips labelled silence" in ln]
    assert len(warned) == 1 and warned[0].startswith("warning: "), done.stderr
    # Float .tflite and Keras agree on the clips both read the same way (16 kHz PCM).
    sub = dict(read_csv(out / "sub.csv")[1:])
    for name in ("good.wav", "stereo.wav", "long3s.wav", "short02.wav", "ünïcödé.wav",
                 'with, comma "quoted".wav'):
        assert rows[name] == sub[name], name


def test_rpi_and_make_submission_list_and_read_the_same_clips(bad_folder_runs):
    done, out = bad_folder_runs["rpi_all"], bad_folder_runs["out"]
    assert done.returncode == 0, done.stderr[-3000:]
    rpi_rows = dict(read_csv(out / "rpi_all.csv")[1:])
    sub_rows = dict(read_csv(out / "sub.csv")[1:])
    assert sorted(rpi_rows) == sorted(sub_rows)
    silent = {name for name, label in rpi_rows.items() if label == "silence"}
    # the Pi's numpy-only reader reads WAV only: a FLAC file named .wav is unreadable there
    flac = {name for name in rpi_rows if "flac" in name.lower()}
    assert flac and flac <= silent
    assert silent - flac == {name for name, label in sub_rows.items()
                             if label == "silence"} - flac


# ---- 2. killed make_submission runs --------------------------------------------------------------
def check_complete_or_temporary(out, n_clips, n_labels):
    """Every file under out is a temp name (.NAME.XXXX.partEXT) or complete and parseable."""
    for path in sorted(out.rglob("*")):
        if path.is_dir():
            continue
        name = path.name
        if name.startswith(".") and ".part" in name:
            continue
        if name == "sub.csv":
            rows = read_csv(path)
            assert rows[0] == ["fname", "label"] and len(rows) == 1 + n_clips, name
        elif name == "sub.probs.csv":
            rows = read_csv(path)
            assert len(rows) == 1 + n_clips and len(rows[0]) == 1 + n_labels, name
            assert all(len(r) == 1 + n_labels and all(0 <= float(v) <= 1 for v in r[1:])
                       for r in rows[1:]), name
        elif name == "sub.probs.u8":
            assert path.stat().st_size == n_clips * n_labels, name
        elif name in ("sub.probs.json", "manifest.json"):
            json.loads(path.read_text())
        elif name.startswith("chunk-") and name.endswith(".npz"):
            with np.load(path) as part:
                assert part["probs"].shape[1] == n_labels
                assert part["probs"].shape[0] == part["ok"].shape[0] > 0
        else:
            raise AssertionError(f"unexpected file {path}")


def start_and_kill(cmd_args, parts, sig, when_chunks):
    """Start make_submission, wait until `when_chunks` chunks are saved (or it ends), signal."""
    proc = script("make_submission.py", *cmd_args, stdout=subprocess.DEVNULL,
                  stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        if len(list(parts.glob("chunk-*.npz"))) >= when_chunks:
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode(errors="replace")


def test_killed_make_submission_resumes_to_identical_outputs(trained, tmp_path):
    clips = tmp_path / "clips"
    for i in range(240):
        write_wav(clips / f"clip_{i:04d}.wav", tone(200 + 7 * i, seconds=0.1, seed=i))
    (clips / "clip_0100_bad.wav").write_bytes(b"RIFF junk")
    n_clips, n_labels, chunk = 241, 12, 16
    n_chunks = -(-n_clips // chunk)
    flags = ["--checkpoint", trained["checkpoint"], "--test_data", clips, "--chunk_size", chunk,
             "--batch_size", "8", "--tta_gain", "0.9,1.1"]
    import make_submission  # the uninterrupted reference runs in this process: no TF import

    assert make_submission.main([*map(str, flags), "--submission_fn",
                                 str(tmp_path / "ref" / "sub.csv")]) == 0
    out = tmp_path / "run"
    parts = out / "sub.csv.parts"
    run_flags = [*flags, "--submission_fn", out / "sub.csv"]
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    first = int(rng.integers(1, n_chunks // 2))
    code, err = start_and_kill(run_flags, parts, signal.SIGTERM, first)
    assert code in (0, 128 + signal.SIGTERM), (seed, code, err[-2000:])
    assert "Traceback" not in err, (seed, err[-2000:])
    check_complete_or_temporary(out, n_clips, n_labels)
    if code:  # SIGTERM unwinds: no temp file stays behind
        assert not [p for p in out.rglob(".*part*")], seed
    second = int(rng.integers(first + 1, n_chunks))
    code2, _ = start_and_kill(run_flags, parts, signal.SIGKILL, second)
    assert code2 in (0, -signal.SIGKILL), (seed, code2)
    check_complete_or_temporary(out, n_clips, n_labels)
    assert code or code2, f"neither run was interrupted (seed {seed}): the test tested nothing"
    print(f"seed {seed}: SIGTERM after {first} chunks -> {code}, SIGKILL after {second} -> {code2}")
    saved = sorted(parts.glob("chunk-*.npz")) if parts.exists() else []
    for path in saved[1::2]:  # as a kill while the work folder is deleted would leave it
        path.unlink()
    final = script("make_submission.py", *run_flags)
    assert final.returncode == 0, final.stderr[-3000:]
    if saved:
        assert "resuming: " in final.stderr, (seed, final.stderr[-2000:])
    for name in ("sub.csv", "sub.probs.csv", "sub.probs.u8", "sub.probs.json"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), (seed, name)
    assert sorted(p.name for p in out.iterdir()) == ["sub.csv", "sub.probs.csv",
                                                      "sub.probs.json", "sub.probs.u8"]


# ---- 3. checkpoints from others: safe mode, files that are not what they claim -------------------
def save_with_labels(keras_model, folder, num_labels=12):
    folder.mkdir(parents=True, exist_ok=True)
    keras_model.save(folder / "m.keras")
    (folder / "labels.txt").write_text("\n".join(WORDS[:num_labels]) + "\n")
    return folder / "m.keras"


def lambda_model(function):
    import keras

    audio = keras.Input((16000,))
    x = keras.layers.Lambda(function)(audio)
    return keras.Model(audio, keras.layers.Dense(12)(x))


def rewrite_keras_config(path, edit):
    """Rewrite config.json inside a .keras zip with edit(config) (a crafted model file)."""
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_a_kill_that_a_library_turns_into_another_error_still_exits_as_a_kill():
    """TensorFlow can re-raise the SIGTERM handler's SystemExit as, say, a TypeError."""
    from kws.common import run_cli

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except SystemExit as e:
            raise TypeError("binding inputs to tf.function failed") from e

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(main, [])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exit_info.value.code == 128 + signal.SIGTERM

    def failing(argv):
        raise TypeError("a real bug keeps its traceback")

    try:
        with pytest.raises(TypeError):
            run_cli(failing, [])
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_checkpoints_with_python_code_are_refused_without_running_it(tmp_path):
    import keras

    from kws.common import UserError

    marker = tmp_path / "lambda_ran.marker"
    code = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]"
    path = save_with_labels(lambda_model(eval(code)), tmp_path / "lambda")
    marker.unlink(missing_ok=True)  # building the model called it once
    with pytest.raises(UserError, match="refusing to load .*Python code") as refused:
        load_checkpoint(path)
    assert "\n" not in str(refused.value) and not marker.exists()

    # A function by name, with a crafted archive naming its module: Keras must not import it.
    payload = tmp_path / "payload_hardening.py"
    payload.write_text("import pathlib\nHERE = pathlib.Path(__file__).parent\n"
                       "(HERE / 'imported.marker').write_text('x')\n"
                       "def scale(x):\n    (HERE / 'called.marker').write_text('x')\n"
                       "    return x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import payload_hardening
        named = save_with_labels(lambda_model(payload_hardening.scale), tmp_path / "named")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("payload_hardening", None)

    def point_at_payload(config):
        functions = [n for n in walk(config) if n.get("class_name") == "function"]
        assert functions
        for node in functions:
            node["module"] = "payload_hardening"

    rewrite_keras_config(named, point_at_payload)
    for leftover in tmp_path.glob("*.marker"):
        leftover.unlink()

    clips = tmp_path / "clips"
    write_wav(clips / "a.wav", tone(440))
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(script, "make_submission.py", "--checkpoint", p, "--test_data",
                            clips, "--submission_fn", tmp_path / f"{p.parent.name}.csv",
                            env={"PYTHONPATH": str(tmp_path)})
                for p in (path, named)]
        lambda_run, named_run = (r.result() for r in runs)
    assert_one_line_error(lambda_run, "refusing to load", "Python code")
    assert_one_line_error(named_run, "not a loadable Keras archive", "scale")
    assert not list(tmp_path.glob("*.marker")), "code from a model file ran"

    # The payload is live: Keras' unsafe mode runs it (what safe mode protects us from).
    keras.models.load_model(path, safe_mode=False, compile=False)
    assert marker.exists()


def test_files_that_are_not_what_they_claim_are_refused(tmp_path, tflite):
    from kws.common import UserError

    rng = np.random.default_rng(3)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "labels.txt").write_text("\n".join(WORDS) + "\n")
    with zipfile.ZipFile(ckpt / "junk.keras", "w") as z:  # a zip, but not a Keras archive
        z.writestr("config.json", "{not json")
        z.writestr("model.weights.h5", rng.bytes(500))
    (ckpt / "text.keras").write_text("a model, honest\n")
    for bad in ("junk.keras", "text.keras"):
        with pytest.raises(UserError, match="not a loadable Keras archive") as refused:
            load_checkpoint(ckpt / bad)
        assert "\n" not in str(refused.value)

    pi = tmp_path / "pi"
    pi.mkdir()
    (pi / "text.tflite").write_text("not a flatbuffer\n")
    (pi / "flat.pb").write_bytes(tflite.read_bytes())  # a real .tflite that claims to be a .pb
    (pi / "m.keras").write_bytes((ckpt / "junk.keras").read_bytes())
    for name in ("text", "flat", "m"):
        shutil.copy(tflite.parent / "edge_labels.txt", pi / f"{name}_labels.txt")
    clips = tmp_path / "clips"
    write_wav(clips / "a.wav", tone(440))
    sub = ["--submission_fn", tmp_path / "out" / "s.csv"]
    cases = [
        (("freeze_graph.py", "--checkpoint_path", ckpt / "junk.keras", "--frozen_path",
          tmp_path / "f" / "m.pb", "--formats", "tflite"), "not a loadable Keras archive"),
        (("benchmark.py", "--checkpoint", ckpt / "junk.keras", "--runs", "1", "--warmup", "0"),
         "not a loadable Keras archive"),
        (("benchmark.py", "--tflite", pi / "text.tflite", "--runs", "1", "--warmup", "0"),
         "not a TFLite model"),
        (("make_submission_on_rpi.py", "--frozen_graph", pi / "text.tflite", "--test_data", clips,
          *sub), "not a TFLite model"),
        (("make_submission_on_rpi.py", "--frozen_graph", pi / "flat.pb", "--test_data", clips,
          *sub), "not a TensorFlow GraphDef"),
        (("make_submission_on_rpi.py", "--frozen_graph", pi / "m.keras", "--test_data", clips,
          *sub), "expected a .pb or .tflite"),
    ]
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(script, *args) for args, _ in cases]
        for (_, fragment), run in zip(cases, runs):
            assert_one_line_error(run.result(), fragment)
    assert not (tmp_path / "out").exists() and not (tmp_path / "f").exists()


# ---- 4. one-line errors and exit code 2 from every script ----------------------------------------
@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_paths_and_flags_give_one_line_and_exit_2(cli_results, case):
    cases, futures, tmp = cli_results
    name, args, fragment = cases[case]
    done = futures[case].result()
    assert_one_line_error(done, fragment)
    if name == "train.py":  # fails before writing anything
        assert not (tmp / "ck").exists() and not (tmp / "logs").exists()


# ---- 5. bad configs, flag values, words, checkpoints and teacher files for train.py -------------
def test_a_bad_config_file_is_a_one_line_error_naming_it(tmp_path):
    from kws.common import UserError
    from kws.train.config import read_config
    from train import build_parser, parse_args

    parser = build_parser()
    cases = {'{"epochs": 3,': "not a valid JSON config", "[3]": "expected a JSON object",
             '{"epochs": [3]}': "epochs must be an integer",
             '{"learning_rate": "fast", "epochs": true}': "epochs must be an integer",
             '{"optimizer": "sdg"}': "optimizer must be one of sgd, rmsprop, adam",
             '{"train_on_validation": 1}': "train_on_validation must be true or false",
             '{"pseudo_dir": "x"}': "pseudo_dir must be a list of strings",
             '{"model_options": [1]}': "model_options must be a JSON object",
             '{"init_checkpoint": 5}': "init_checkpoint must be a string"}
    for i, (text, said) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.json"
        path.write_text(text)
        with pytest.raises(UserError, match=said) as refused:
            read_config(str(path), parser)
        assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="not a valid JSON config"):
        parse_args(["--config", str(tmp_path / "binary.json"), "--data_dir", "x"])
    # what a flag would take is taken: a string argparse reads, an int where a float goes
    (tmp_path / "ok.json").write_text('{"epochs": "3", "cap_minutes": 15, "balance_words": null, '
                                      '"model_options": {"width": 2}, "noise_dir": ["n"]}')
    config = read_config(str(tmp_path / "ok.json"), parser)
    assert config["cap_minutes"] == 15.0 and isinstance(config["cap_minutes"], float)
    for name in sorted((REPO / "experiments").glob("*.json")):  # every recipe still reads
        read_config(str(name), parser)


def test_out_of_range_training_flags_are_refused(tmp_path):
    from kws.common import UserError
    from train import parse_args

    for flag, value in (("--steps_per_epoch", "-1"), ("--learning_rate", "-1"),
                        ("--learning_rate", "0"), ("--lr_factor", "1"), ("--momentum", "1"),
                        ("--min_lr", "-0.1"), ("--warmup_epochs", "-1"), ("--threads", "-2"),
                        ("--max_minutes", "-1"), ("--weight_decay", "-0.1")):
        with pytest.raises(UserError, match=flag):
            parse_args(["--data_dir", "x", flag, value])
    args = parse_args(["--data_dir", "x", "--steps_per_epoch", "0", "--min_lr", "0"])
    assert args.steps_per_epoch == 0  # 0: one pass over the training set


def test_wanted_words_without_clips_are_named(tmp_path):
    from kws.common import UserError

    speakers = [f"{i:08x}" for i in range(4)]
    root = make_speech_commands(tmp_path / "sc", ["yes", "no", "cat"], speakers)
    with pytest.raises(UserError, match=r"--wanted_words foo,bar: no clips in .*sc") as refused:
        AudioProcessor(str(root), wanted_words="yes,foo,no,bar")
    assert "\n" not in str(refused.value)
    AudioProcessor(str(root), wanted_words="yes,no")
    assert len(AudioProcessor(str(root), wanted_words="all").words_list) == 5
    AudioProcessor(str(root))  # the default competition words: a partial folder still reads
    extra = make_speech_commands(tmp_path / "extra", ["on"], ["feedf00d"], noise=False)
    p = AudioProcessor(str(root), wanted_words="yes,on", train_only_dirs=[str(extra)])
    assert p.label_counts("training")["on"] == 1  # a word only a train-only folder has
    pool = make_speech_commands(tmp_path / "pool", ["off"], ["0badf00d"], noise=False)
    AudioProcessor(str(root), wanted_words="yes,off", pseudo_dirs=[str(pool)],
                   pseudo_frequency=0.5)  # a word only the pseudo pool has
    # with train.py's --pack, a word may have pack images only
    AudioProcessor.from_settings({"data_dir": str(root), "wanted_words": "yes,off",
                                  "pack": str(tmp_path / "pack.zip")})
    with pytest.raises(UserError, match="--wanted_words off"):
        AudioProcessor.from_settings({"data_dir": str(root), "wanted_words": "yes,off",
                                      "pack": ""})


def test_an_unreadable_init_checkpoint_is_a_one_line_error(tmp_path):
    from kws.common import UserError
    from kws.train.loop import load_init_weights
    from kws.zoo import build_model

    net = build_model("ds_cnn_s", 3)
    (tmp_path / "random.keras").write_bytes(np.random.default_rng(6).bytes(3000))
    (tmp_path / "empty.keras").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "no_weights.keras", "w") as z:
        z.writestr("config.json", "{}")
    (tmp_path / "random.weights.h5").write_bytes(np.random.default_rng(7).bytes(3000))
    for name in ("random.keras", "empty.keras", "no_weights.keras", "random.weights.h5"):
        path = str(tmp_path / name)
        with pytest.raises(UserError, match="--init_checkpoint") as refused:
            load_init_weights(net, path)
        assert path in str(refused.value) and "\n" not in str(refused.value)


def test_a_bad_teacher_probabilities_file_is_a_one_line_error(tmp_path):
    from kws.common import UserError
    from kws.train.distill import load_teacher_probs

    labels = ["_silence_", "_unknown_", "yes", "no"]
    header = "fname,silence,unknown,yes,no\n"
    files = {"binary.csv": np.random.default_rng(8).bytes(2000), "empty.csv": b"",
             "header.csv": header.encode(), "words.csv": (header + "a.wav,x,0,1,0\n").encode(),
             "too_big.csv": (header + "a.wav,0,0,7,0\n").encode(),
             "no_yes.csv": b"fname,silence,unknown,no\na.wav,0,0,1\n",
             "repeated.csv": (header + "./a.wav,0,0,1,0\na.wav,0,0,1,0\n").encode()}
    said = {"binary.csv": "not a readable CSV", "empty.csv": "not a readable CSV",
            "header.csv": "no rows", "words.csv": "non-numeric", "too_big.csv": "finite and in",
            "no_yes.csv": "needs columns", "repeated.csv": "repeated"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match=said[name]) as refused:
            load_teacher_probs(str(tmp_path / name), labels)
        assert str(tmp_path / name) in str(refused.value) and "\n" not in str(refused.value)
    (tmp_path / "ok.csv").write_text("fname,no,yes,unknown,silence\n./yes/a.wav,0.5,0.5,0,0\n")
    got = load_teacher_probs(str(tmp_path / "ok.csv"), labels)
    np.testing.assert_allclose(got["yes/a.wav"], [0, 0, 0.5, 0.5])


def test_train_py_gives_one_line_for_a_bad_config_and_learning_rate(tmp_path):
    (tmp_path / "bad.json").write_text('{"epochs": 3,')
    runs = [script("train.py", "--config", tmp_path / "bad.json", "--data_dir", tmp_path),
            script("train.py", "--data_dir", tmp_path, "--learning_rate", "-1")]
    assert_one_line_error(runs[0], "bad.json", "not a valid JSON config")
    assert_one_line_error(runs[1], "--learning_rate must be > 0")
