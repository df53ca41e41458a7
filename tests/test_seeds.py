"""summarize_seeds.py: the mean and spread of each figure over runs of different seeds."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import summarize_seeds
from kws.common import UserError
from kws.seeds import spread, summarize_runs

REPO = Path(__file__).resolve().parents[1]


def write_run(path, int8, fa_per_hour, go_recall):
    results = {"edge_int8": {"int8": {"accuracy": int8, "recall": {"yes": 1.0, "go": go_recall}}},
               "models": {"edge": {"epochs": 22},
                          "seed195": {"accuracy_tta": int8 - 0.05,
                                      "recall_tta": {"off": go_recall - 0.1}}},
               "streaming": {"ours": {"false_accepts_per_hour": fa_per_hour},
                             "chosen_on_validation": {"detection_rate": go_recall,
                                                      "false_accepts_per_hour": 2.0}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))
    return str(path)


def test_spread_is_the_mean_and_sample_deviation():
    s = spread([0.96, 0.97, 0.98])
    assert s.mean == pytest.approx(0.97)
    assert s.std == pytest.approx(0.01)
    assert (s.min, s.max) == (0.96, 0.98)
    assert spread([0.5]).std == 0.0


def test_three_runs_are_summarised_figure_by_figure(tmp_path):
    paths = [write_run(tmp_path / f"s{i}" / "results.json", a, fa, go)
             for i, (a, fa, go) in enumerate([(0.97, 18.0, 0.88), (0.98, 6.0, 0.93),
                                              (0.975, 12.0, 0.99)])]
    summary = summarize_runs(paths)
    assert summary["figures"]["edge_int8_accuracy"]["mean"] == pytest.approx(0.975)
    assert summary["figures"]["edge_int8_accuracy"]["values"] == [0.97, 0.98, 0.975]
    assert summary["figures"]["stream_false_accepts_per_hour"]["max"] == 18.0
    # the point chosen on validation, as the validation streams read it, beside the held-out one
    assert summary["figures"]["stream_validation_detection_rate"]["values"] == [0.88, 0.93, 0.99]
    assert summary["figures"]["stream_validation_false_accepts_per_hour"]["std"] == 0.0
    assert summary["figures"]["edge_epochs"]["std"] == 0.0
    assert "edge_tta_accuracy" not in summary["figures"]  # in no run
    assert summary["figures"]["seed195_tta_accuracy"]["mean"] == pytest.approx(0.925)
    assert summary["figures"]["seed195_recall_off"]["values"] == pytest.approx([0.78, 0.83, 0.89])
    assert "edge_recall_off" not in summary["figures"]
    assert summary["weakest_word"][0] == {"word": "go", "recall": 0.88}


def test_the_script_writes_json_and_a_missing_run_is_one_line(tmp_path):
    path = write_run(tmp_path / "a" / "results.json", 0.97, 1.0, 0.9)
    out = tmp_path / "summary.json"
    assert summarize_seeds.main([path, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["figures"]["edge_int8_accuracy"]["mean"] == 0.97
    done = subprocess.run([sys.executable, "summarize_seeds.py", str(tmp_path / "none.json")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0
    assert done.stderr.strip().startswith("error:") and "results not found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content, message", [
    ([1, 2], "not a results.json (a JSON list"),
    ({"edge_int8": {"int8": {"accuracy": 0.9, "recall": {"go": "0.8"}}}},
     "edge_int8.int8.recall.go is not a number ('0.8')"),
    ({"edge_int8": {"int8": {"accuracy": "high"}}}, "edge_int8.int8.accuracy is not a number"),
    ({"models": ["edge"]}, "models is not an object"),
    ({"loss": 0.1, "config": {"lr": 3}}, "not a real.py results.json"),
    ({}, "not a real.py results.json"),
])
def test_a_file_that_is_no_results_json_is_one_line_naming_it(tmp_path, content, message):
    good = write_run(tmp_path / "a" / "results.json", 0.97, 1.0, 0.9)
    bad = tmp_path / "b" / "X.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(content))
    with pytest.raises(UserError) as e:
        summarize_runs([good, str(bad)])
    assert str(e.value).startswith(f"{bad}: ") and message in str(e.value)
    assert "\n" not in str(e.value)
    done = subprocess.run([sys.executable, "summarize_seeds.py", good, str(bad)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: {e.value}"]
