"""benchmark.py: one run measures a checkpoint and its .pb, .tflite and int8 .tflite together."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import benchmark
import freeze_graph
from kws.audio import write_wav
from kws.bench import frozen_info, parse_spec
from kws.common import UserError
from kws.labels import COMPETITION_LABELS
from kws.zoo import build_model

REPO = Path(__file__).resolve().parents[1]
KEYS = {"name", "format", "size_bytes", "latency_ms_median", "latency_ms_p90", "params", "macs",
        "peak_rss_mb", "model_rss_mb", "accuracy"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An (untrained) ds_cnn_s checkpoint, frozen to all formats, and a tiny labelled folder."""

    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    data = root / "data"
    for k, label in enumerate(COMPETITION_LABELS[:4]):
        for i in range(3):
            t = np.arange(16000) / 16000
            write_wav(data / label / f"s{i}_nohash_0.wav",
                      0.3 * np.sin(2 * np.pi * 200 * (k + 1) * t) + rng.normal(0, 0.01, 16000))
    net = build_model("ds_cnn_s", len(COMPETITION_LABELS))
    (root / "ckpt").mkdir()
    net.save(root / "ckpt" / "model.keras")
    (root / "ckpt" / "labels.txt").write_text("\n".join(COMPETITION_LABELS) + "\n")
    # an untrained model's near-uniform outputs make top-1 agreement meaningless: don't gate on it
    assert freeze_graph.main(["--checkpoint_path", str(root / "ckpt" / "model.keras"),
                              "--frozen_path", str(root / "tf_files" / "m.pb"),
                              "--calibration_data", str(data), "--num_calibration", "8",
                              "--num_check", "4", "--int8_agreement", "0"]) == 0
    return {"root": root, "data": data, "ckpt": root / "ckpt" / "model.keras",
            "tf": root / "tf_files"}


def test_benchmark_compares_every_format(models, tmp_path, capsys):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    tf = models["tf"]
    assert benchmark.main(["--checkpoint", str(models["ckpt"]), "--pb", str(tf / "m.pb"),
                           "--tflite", str(tf / "m.tflite"),
                           f"int8={tf / 'm_int8.tflite'}", "--runs", "5", "--warmup", "1",
                           "--accuracy_data", str(models["data"]),
                           "--json", str(out_json), "--markdown", str(out_md)]) == 0
    rows = json.loads(out_json.read_text())
    assert [r["format"] for r in rows] == ["keras", "pb", "tflite", "tflite_int8"]
    assert rows[3]["name"] == "int8" and rows[1]["name"] == "m.pb"
    stats = json.loads((tf / "m_info.json").read_text())
    for row in rows:
        assert KEYS <= set(row), KEYS - set(row)
        assert row["runs"] == 5 and row["threads"] == 1
        assert 0 < row["latency_ms_median"] <= row["latency_ms_p90"]
        assert row["size_bytes"] == Path(row["path"]).stat().st_size
        assert (row["params"], row["macs"]) == (stats["params"], stats["macs"])
        assert row["peak_rss_mb"] > row["model_rss_mb"] >= 0
        assert 0 <= row["accuracy"] <= 1 and row["accuracy_clips"] == 12
    # the float exports compute what the checkpoint computes
    assert rows[0]["accuracy"] == rows[1]["accuracy"] == rows[2]["accuracy"]
    assert rows[3]["size_bytes"] < rows[2]["size_bytes"]
    markdown = out_md.read_text().splitlines()
    assert markdown[0].startswith("| model | format | size (bytes) | params | MACs |")
    assert len([ln for ln in markdown if ln.startswith("| ")]) == 1 + 4
    printed = capsys.readouterr().out
    assert "latency median (ms)" in printed and "1 thread(s)" in printed


def test_benchmark_refuses_garbage_models(models, tmp_path):
    rng = np.random.default_rng(1)
    for ext, message in ((".tflite", "not a TFLite model"), (".pb", "not a TensorFlow GraphDef")):
        garbage = tmp_path / f"garbage{ext}"
        garbage.write_bytes(rng.bytes(2048))
        (tmp_path / "garbage_labels.txt").write_text("\n".join(COMPETITION_LABELS))
        with pytest.raises(UserError, match=f"garbage{ext}: .*{message}"):
            benchmark.main([str(garbage), "--runs", "1", "--warmup", "0"])


def test_model_specs():
    with pytest.raises(UserError, match="model not found"):
        parse_spec("edge=missing.tflite")
    with pytest.raises(UserError, match="unknown model format"):
        parse_spec(__file__)
    with pytest.raises(UserError, match="no model given"):
        benchmark.main(["--runs", "5"])


def test_model_spec_names_and_formats(models):
    tf = models["tf"]
    spec = parse_spec(f"edge={tf / 'm.tflite'}")
    assert spec == {"name": "edge", "path": str(tf / "m.tflite"), "format": "tflite"}
    assert parse_spec(str(models["ckpt"]))["name"] == "ckpt/model.keras"
    with pytest.raises(UserError, match="a .tflite file given as --pb"):
        parse_spec(str(tf / "m.tflite"), "pb")
    assert frozen_info(str(tf / "m_int8.tflite"))["params"] > 0
    assert frozen_info(str(models["ckpt"])) == {}


def test_cli_missing_model_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "benchmark.py", "--tflite",
                           str(tmp_path / "none.tflite")], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: model not found: {tmp_path / 'none.tflite'}"


def test_pipeline_benchmark_writes_its_figures(speech_commands, tmp_path):
    out = tmp_path / "pipeline.json"
    assert benchmark.main(["--pipeline", str(speech_commands), "--pipeline_steps", "2",
                           "--pipeline_rounds", "2", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["rounds"] == 2 and len(figures["audio"]) == 2
    for result in figures["audio"].values():
        assert len(result["input_wait_rounds"]) == 2
        assert 0 <= result["input_wait"] < 1 and result["step_cached_ms"] > 0
        assert result["pipeline_alone_ms"] > 0 and result["examples_per_second_live"] > 0
    with pytest.raises(UserError):
        benchmark.main(["--pipeline", str(speech_commands), "--pipeline_rounds", "0"])
