"""Bad input found by an audit of every script: binary text files, empty and mismatched streams,
flag values out of range (nan included), malformed probability sidecars. Each is a UserError
(one line, exit code 2 under run_cli) raised before any long work starts."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kws.audio import write_wav
from kws.common import UserError, read_text
from kws.labels import read_labels
from kws.probs import read_probs_u8
from kws.streaming import read_ground_truth, score_stream
from kws.submission.inputs import read_test_list

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "edge_int8.tflite"
BINARY = b"\x00\xff\xfe garbage \x80\x81"


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(BINARY)
    return path


@pytest.mark.parametrize("reader", [read_labels, read_test_list, read_ground_truth,
                                    lambda p: read_text(p, "list")])
def test_a_binary_text_file_names_itself(binary, reader):
    with pytest.raises(UserError, match=r"binary\.txt: not UTF-8 text"):
        reader(str(binary))


def test_run_cli_reports_any_other_undecodable_text_in_one_line(tmp_path, binary):
    code = ("from kws.common import run_cli\n"
            f"run_cli(lambda argv: open({str(binary)!r}, encoding='utf-8').read())\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: a file read as text is not UTF-8 text (invalid start byte at byte 1)"]


class Constant:
    """A stand-in streaming model: the same probabilities for every hop."""

    def predict(self, samples):
        return np.array([0.5, 0.5], np.float32)


def test_a_stream_shorter_than_a_window_scores_no_hop():
    times, probs = score_stream(Constant(), [np.zeros(800, np.float32)], 20.0)
    assert times.shape == (0,) and probs.shape == (0, 0)


def shipped_or_skip():
    if not SHIPPED.is_file():
        pytest.skip("no shipped model in models/")
    pytest.importorskip("ai_edge_litert")
    return str(SHIPPED)


def test_an_empty_or_mismatched_stream_is_refused(tmp_path):
    from kws.runtime import load_streaming_model
    from kws.stream_eval import load_stream

    model, _ = load_streaming_model(shipped_or_skip())
    empty = tmp_path / "empty.wav"
    write_wav(str(empty), np.zeros(0, np.float32))
    (tmp_path / "empty.csv").write_text("label,time_ms\nyes,500\n")
    with pytest.raises(UserError, match="shorter than one second"):
        load_stream(model, str(empty), None, 20.0)
    short = tmp_path / "short.wav"
    write_wav(str(short), np.zeros(3 * 16000, np.float32))
    (tmp_path / "short.csv").write_text("label,time_ms\nyes,500\nno,99999999\n")
    with pytest.raises(UserError, match="99999999 ms, past the end"):
        load_stream(model, str(short), None, 20.0)


def run_main(name, argv):
    """A root script's main(argv), in this process (the scripts do no work at import)."""
    return importlib.import_module(name).main(argv)


def test_pack_held_out_folders_need_the_pack_and_must_exist(tmp_path):
    parse_args = importlib.import_module("train").parse_args
    with pytest.raises(UserError, match="--pack_held_out_dir needs --pack"):
        parse_args(["--data_dir", "x", "--pack_held_out_dir", str(tmp_path)])
    (tmp_path / "p.zip").write_bytes(b"")
    with pytest.raises(UserError, match="--pack_held_out_dir folder not found"):
        parse_args(["--data_dir", "x", "--model_options", '{"features": "pack"}', "--pack",
                    str(tmp_path / "p.zip"), "--pack_held_out_dir", str(tmp_path / "gone")])


@pytest.mark.parametrize("flag,value", [("--after_ms", "-5"), ("--time_tolerance_ms", "-5"),
                                        ("--target_fa_per_hour", "-1"),
                                        ("--target_fa_per_hour", "nan")])
def test_streaming_accuracy_refuses_out_of_range_flags_before_loading(flag, value):
    with pytest.raises(UserError, match=flag):
        run_main("streaming_accuracy", ["--model", "missing.tflite", "--wav", "missing.wav",
                                        flag, value])


@pytest.mark.parametrize("argv,flag", [
    (["--stream_minutes", "-1"], "--stream_minutes"),
    (["--negative_stream_minutes", "nan"], "--negative_stream_minutes"),
    (["--zoo_cpu_minutes", "-1"], "--zoo_cpu_minutes"),
])
def test_real_refuses_out_of_range_minutes_before_training(tmp_path, argv, flag):
    with pytest.raises(UserError, match=flag):
        run_main("real", ["--shared", str(tmp_path / "missing"), "--out_dir",
                          str(tmp_path / "out"), *argv])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,flag", [(["--seconds", "nan"], "--seconds"),
                                       (["--seconds", "1e9"], "--seconds"),
                                       (["--rms_db", "nan"], "--rms_db")])
def test_generate_noise_refuses_nan_and_huge_lengths(tmp_path, argv, flag):
    with pytest.raises(UserError, match=flag):
        run_main("generate_noise", ["--out_dir", str(tmp_path / "n"), *argv])
    assert not (tmp_path / "n").exists()


def test_recognize_commands_refuses_nan_seconds():
    with pytest.raises(UserError, match="--seconds"):
        run_main("recognize_commands", ["--model", "missing.tflite", "--seconds", "nan"])


def test_a_thread_count_under_one_is_named_as_such():
    from kws.runtime import TFLiteModel
    with pytest.raises(UserError, match="--threads must be 1 or more, got -2"):
        TFLiteModel(shipped_or_skip(), -2)


@pytest.mark.parametrize("field", ["labels", "fnames"])
def test_a_probabilities_sidecar_without_lists_is_refused(tmp_path, field):
    sidecar = {"shape": [1, 2], "fnames": ["a.wav"], "labels": ["yes", "no"], "scale": 255.0}
    sidecar[field] = None
    (tmp_path / "s.probs.json").write_text(json.dumps(sidecar))
    (tmp_path / "s.probs.u8").write_bytes(bytes([128, 127]))
    with pytest.raises(UserError, match="not a probabilities sidecar"):
        read_probs_u8(str(tmp_path / "s.probs.json"))


def test_benchmark_checks_the_pack_before_the_audio_figures(tmp_path):
    from kws.pipeline_bench import pipeline_benchmark
    with pytest.raises(UserError, match="not found"):
        pipeline_benchmark(str(tmp_path / "no_data"), 2, pack=str(tmp_path / "missing.zip"))
    (tmp_path / "corrupt.zip").write_bytes(BINARY)
    with pytest.raises(UserError, match="not a zip archive"):
        pipeline_benchmark(str(tmp_path / "no_data"), 2, pack=str(tmp_path / "corrupt.zip"))
