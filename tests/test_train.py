"""train.py end to end on a tiny generated dataset: checkpoints, logs, resume, distillation."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_speech_commands

REPO = Path(__file__).resolve().parents[1]
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "cat", "dog"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    return make_speech_commands(root / "sc", WORDS, [f"{i:08x}" for i in range(12)])


def train(tmp, data, *flags, check=True, **popen):
    cmd = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "experiments/smoke.json"),
           "--data_dir", str(data), "--checkpoint_dir", str(tmp / "ck"), "--log_dir",
           str(tmp / "logs"), *flags]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CI="1")
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(path):
    import keras

    import kws.layers  # noqa: F401
    return keras.models.load_model(path, compile=False, safe_mode=True).get_weights()


def log_rows(tmp, exp="smoke"):
    """Metrics per epoch, without the (timing-dependent) throughput."""
    with open(tmp / "logs" / exp / "log.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        assert float(row.pop("examples_per_second")) > 0
    return rows


FLAGS = ["--epochs", "3", "--steps_per_epoch", "4"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory, data):
    """One uninterrupted reference run."""
    tmp = tmp_path_factory.mktemp("whole")
    train(tmp, data, *FLAGS, "--learning_rate", "0.002")
    return tmp


def test_run_writes_checkpoints_logs_and_resolved_config(whole, data):
    exp = whole / "ck" / "smoke"
    names = sorted(os.listdir(exp))
    assert len([n for n in names if n.startswith("ep-") and n.endswith(".keras")]) == 3
    assert {"labels.txt", "config.json", "last.keras", "state.json", "resume"} <= set(names)
    assert sorted(os.listdir(exp / "resume")) == ["model-003.keras", "optimizer-003.npz"]
    config = json.loads((exp / "config.json").read_text())
    assert config["learning_rate"] == 0.002 and config["model"] == "ds_cnn_s"  # flag > config
    assert (exp / "labels.txt").read_text().split()[:2] == ["_silence_", "_unknown_"]
    rows = log_rows(whole)
    assert len(rows) == 3 and {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(rows[0])
    assert (whole / "logs" / "smoke" / "confusion-ep003.csv").exists()
    assert any(p.name.startswith("events") for p in (whole / "logs" / "smoke").rglob("*"))
    from kws.recipe import best_checkpoint
    assert os.path.exists(best_checkpoint(str(exp)))
    again = train(whole, data, *FLAGS, check=False)
    assert again.returncode == 2 and "--resume" in again.stderr
    # resuming it as another run (another seed, model, options, words or teacher) is refused
    # before anything in the folder changes, not mixed up
    config_before = (exp / "config.json").read_bytes()
    for flags, said in ((["--seed", "7"], "--seed 59185, not 7"),
                        (["--model", "edge_tcs"], "--model ds_cnn_s, not edge_tcs"),
                        (["--model_options", '{"width": 2}'], "--model_options"),
                        (["--wanted_words", "yes,no"], "--wanted_words"),
                        (["--teacher_checkpoint", str(exp / "last.keras")],
                         "--teacher_checkpoint [], not")):
        other = train(whole, data, *FLAGS, *flags, "--resume", check=False)
        assert other.returncode == 2 and said in other.stderr, other.stderr
    assert (exp / "config.json").read_bytes() == config_before


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(weights(a), weights(b)))


def test_same_seed_same_first_epoch_and_resume_equals_uninterrupted(tmp_path, whole, data):
    train(tmp_path, data, *FLAGS, "--learning_rate", "0.002", "--epochs", "1")
    assert log_rows(tmp_path)[0] == log_rows(whole)[0]
    plant_uncommitted_epoch(tmp_path / "ck/smoke", whole / "ck/smoke", tmp_path / "logs/smoke")
    train(tmp_path, data, *FLAGS, "--learning_rate", "0.002", "--resume")
    assert same_weights(whole / "ck/smoke/last.keras", tmp_path / "ck/smoke/last.keras")
    assert log_rows(tmp_path) == log_rows(whole)


def plant_uncommitted_epoch(exp, other, log_dir):
    """What a kill between saving epoch 2's model and committing its state.json leaves behind."""
    shutil.copyfile(other / "resume/model-003.keras", exp / "resume/model-002.keras")
    shutil.copyfile(other / "resume/optimizer-003.npz", exp / "resume/optimizer-002.npz")
    with open(log_dir / "log.csv", "a") as f:
        f.write(open(other.parents[1] / "logs/smoke/log.csv").readlines()[-1])


def kill_during_training(tmp, data, sig, flags):
    run = train(tmp, data, *flags, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    state = tmp / "ck" / "smoke" / "state.json"
    started = state.stat().st_mtime if state.exists() else 0
    while (not state.exists() or state.stat().st_mtime == started) and run.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(np.random.default_rng().uniform(0, 1.0))
    run.send_signal(sig)
    run.wait(60)


def test_killed_runs_resume_to_the_same_result(tmp_path, whole, data):
    flags = [*FLAGS, "--learning_rate", "0.002"]
    kill_during_training(tmp_path, data, signal.SIGTERM, flags)
    kill_during_training(tmp_path, data, signal.SIGKILL, [*flags, "--resume"])
    exp = tmp_path / "ck" / "smoke"
    for name in os.listdir(exp):  # whatever is there under a final name is complete
        if name.endswith(".keras") and not name.startswith("."):
            weights(exp / name)
    train(tmp_path, data, *flags, "--resume")
    assert same_weights(whole / "ck/smoke/last.keras", exp / "last.keras")
    assert not [n for n in os.listdir(exp) + os.listdir(exp / "resume") if ".part" in n]


def test_weight_average_is_what_validation_and_checkpoints_see_and_resumes_exactly(tmp_path,
                                                                                  whole, data):
    ema = [*FLAGS, "--learning_rate", "0.002", "--ema_momentum", "0.9"]
    train(tmp_path / "a", data, *ema)
    rows = log_rows(tmp_path / "a")
    plain = log_rows(whole)
    # the same training steps (epoch 1 trains before any swap), another model to validate
    assert (rows[0]["loss"], rows[0]["accuracy"]) == (plain[0]["loss"], plain[0]["accuracy"])
    assert rows[0]["val_loss"] != plain[0]["val_loss"]
    exp = tmp_path / "a" / "ck" / "smoke"
    assert not same_weights(exp / "last.keras", whole / "ck/smoke/last.keras")
    # a run stopped after epoch 1 and resumed saves, and logs, what the whole run does
    train(tmp_path / "b", data, *ema, "--epochs", "1")
    train(tmp_path / "b", data, *ema, "--resume")
    assert same_weights(exp / "last.keras", tmp_path / "b/ck/smoke/last.keras")
    assert log_rows(tmp_path / "b") == rows
    other = train(tmp_path / "a", data, *FLAGS, "--learning_rate", "0.002", "--resume",
                  check=False)
    assert other.returncode == 2 and "--ema_momentum 0.9, not 0.0" in other.stderr
    bad = train(tmp_path / "c", data, *FLAGS, "--ema_momentum", "1", check=False)
    assert bad.returncode == 2 and "--ema_momentum must be in [0, 1)" in bad.stderr


def test_cosine_learning_rate_decays_to_the_floor_under_a_warm_up_factor():
    from kws.train.budget import cosine_learning_rate

    rates = [cosine_learning_rate(p, 1e-3, 1e-5) for p in np.linspace(0, 1, 101)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert cosine_learning_rate(0.5, 1e-3, 0) == pytest.approx(5e-4)
    assert cosine_learning_rate(0.0, 1e-3, 0, warmup=0.1) == pytest.approx(1e-4)
    assert cosine_learning_rate(1.5, 1e-3, 1e-5) == pytest.approx(1e-5)  # past the budget


def test_budget_spent_only_when_the_saved_time_passes_this_runs_budget():
    from kws.train.budget import budget_spent
    from train import parse_args

    args = parse_args(["--data_dir", "x", "--max_minutes", "2"])
    assert not budget_spent(None, args) and not budget_spent({"epoch": 3}, args)
    assert budget_spent({"time_used": {"wall_seconds": 121, "cpu_seconds": 50}}, args)
    assert not budget_spent({"time_used": {"wall_seconds": 119, "cpu_seconds": 500}}, args)
    args = parse_args(["--data_dir", "x"])
    assert not budget_spent({"time_used": {"wall_seconds": 1e6, "cpu_seconds": 1e6}}, args)


def test_cosine_final_fit_on_validation_keeps_its_last_epoch(tmp_path, data):
    train(tmp_path, data, "--epochs", "4", "--steps_per_epoch", "2", "--learning_rate", "0.002",
          "--lr_schedule", "cosine", "--warmup_epochs", "1", "--train_on_validation",
          "--save_best_only", "--min_lr", "1e-5")
    rates = [float(row["learning_rate"]) for row in log_rows(tmp_path)]
    assert rates[0] == pytest.approx(2e-4) and rates[1] == pytest.approx(0.75 * 2e-3, rel=0.01)
    assert rates[1] > rates[2] > rates[3] and rates[3] == pytest.approx(1e-5)
    from kws.recipe import best_checkpoint
    exp = tmp_path / "ck" / "smoke"
    assert best_checkpoint(str(exp)) == str(exp / "last.keras")
    assert same_weights(exp / "last.keras", exp / "resume/model-004.keras")
    assert not list(exp.glob("ep-*.keras"))  # nothing to select on: only the final model
    assert sorted(os.listdir(exp / "resume")) == ["model-004.keras", "optimizer-004.npz"]


def test_distillation_from_probabilities_and_teacher_checkpoint(tmp_path, whole, data):
    from conftest import tone

    from kws.audio import write_wav

    labels = (whole / "ck" / "smoke" / "labels.txt").read_text().split()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        name = f"clip_{i:04x}.wav"
        write_wav(tmp_path / "pseudo" / labels[2 + i % 10] / name, tone(300 + 150 * (i % 10)))
        rows.append([name] + [f"{v:.6f}" for v in rng.dirichlet(np.ones(len(labels)))])
    probs = tmp_path / "teacher.probs.csv"
    with open(probs, "w", newline="") as f:
        csv.writer(f).writerows([["fname"] + labels] + rows)
    train(tmp_path / "s1", data, "--teacher_probs", str(probs), "--distill_weight", "0.7",
          "--pseudo_dir", str(tmp_path / "pseudo"), "--pseudo_frequency", "0.5")
    teacher = whole / "ck" / "smoke" / "last.keras"
    train(tmp_path / "s2", data, "--teacher_checkpoint", str(teacher), "--distill_temperature", "3")
    assert len(log_rows(tmp_path / "s1")) == 2 and len(log_rows(tmp_path / "s2")) == 2


def test_distillation_loss_blends_only_where_a_teacher_speaks():
    import tensorflow as tf

    from kws.train.distill import make_loss

    loss = make_loss(3, 0.0, 2.0, 1.0)
    logits = tf.constant([[2.0, 0.0, -1.0], [2.0, 0.0, -1.0]])
    y = tf.constant([[0, -1, -1, -1], [0, 0.0, 1.0, 0.0]])
    hard_only, soft = loss(y, logits).numpy()
    expected_ce = -tf.nn.log_softmax(logits[0])[0].numpy()
    assert np.isclose(hard_only, expected_ce, atol=1e-5)
    expected_kd = 4 * -tf.nn.log_softmax(logits[1] / 2)[1].numpy()
    assert np.isclose(soft, expected_kd, atol=1e-3)


def test_a_warm_start_loads_every_weight_or_fails_loudly(tmp_path):
    from kws.common import UserError
    from kws.train.loop import load_init_weights
    from kws.zoo import build_model
    path = str(tmp_path / "start.keras")
    build_model("ds_cnn_s", 3).save(path)
    net = build_model("ds_cnn_s", 3)
    load_init_weights(net, path)
    assert all(np.array_equal(a, b) for a, b in zip(net.get_weights(), weights(path)))
    for other in (build_model("ds_cnn_s", 4), build_model("tutorial_conv", 3)):
        with pytest.raises(UserError, match="does not fit this model"):
            load_init_weights(other, path)
    with pytest.raises(UserError, match="init checkpoint"):
        load_init_weights(net, str(tmp_path / "missing.keras"))


def test_bad_flags_and_configs_exit_2(tmp_path, data):
    bad_config = tmp_path / "bad.json"
    bad_config.write_text('{"modle": "ds_cnn_s"}')
    cases = [["--optimizer", "adagrad"], ["--config", str(bad_config)],
             ["--data_dir", str(tmp_path / "missing")], ["--model", "no_such_model"],
             ["--time_shift_mode", "wrap"]]
    for flags in cases:
        done = train(tmp_path, data, *flags, check=False)
        assert done.returncode == 2, (flags, done.stderr[-500:])
        assert done.stderr.strip().splitlines()[-1].startswith(("error", "usage", "train.py"))


def test_stop_reason_names_the_budget_that_ended_the_run():
    from kws.train.budget import stop_reason

    used = {"wall_seconds": 600, "cpu_seconds": 300}
    assert stop_reason(used, 3, 10, 0, 0, 0) is None
    assert stop_reason(used, 10, 10, 0, 0, 0) == "epochs"
    assert stop_reason(used, 3, 10, 10, 0, 0) == "wall-clock budget"
    assert stop_reason(used, 3, 10, 0, 5, 0) == "CPU budget"
    assert stop_reason(used, 3, 10, 0, 0, 10) == "wall-clock cap"
    assert stop_reason(used, 3, 10, 0, 0, 11) is None


def test_a_wall_clock_cap_never_shapes_the_cosine_schedule():
    """Epoch budgets give the same model on any CPU: only --max_minutes and --max_cpu_minutes
    (budgets by design) speed up the decay, the --cap_minutes guard does not."""
    from kws.train.callbacks import make_budget_callback
    from train import parse_args

    args = parse_args(["--data_dir", "x", "--cap_minutes", "0.001", "--epochs", "10"])
    budget = make_budget_callback(args.max_minutes, args.max_cpu_minutes, 64, epochs=10,
                                  cap_minutes=args.cap_minutes)
    budget.on_train_begin()
    budget.spent = {"wall_seconds": 1e6, "cpu_seconds": 1e6}
    assert budget.fraction_used() == 0


def test_state_records_which_budget_ended_the_run(whole):
    state = json.loads((whole / "ck" / "smoke" / "state.json").read_text())
    assert state["stopped_by"] == "epochs" and state["epoch"] == 3


def test_a_resume_compares_paths_as_files_and_ignores_a_left_out_starting_point(tmp_path,
                                                                                monkeypatch):
    from argparse import Namespace

    from kws.common import UserError
    from kws.train.run_dir import check_same_run

    monkeypatch.chdir(tmp_path)
    saved = {"model": "edge_tcs", "model_options": {"width": 2}, "seed": 1,
             "wanted_words": "yes,no", "teacher_checkpoint": ["ck/t/best.keras"],
             "teacher_probs": None, "init_checkpoint": "ck/start.keras"}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    same = Namespace(**{**saved, "teacher_checkpoint": [str(tmp_path / "ck/t/best.keras")],
                        "init_checkpoint": None})
    check_same_run(str(tmp_path), same)  # the same teacher spelled absolutely; no init given
    with pytest.raises(UserError, match="--init_checkpoint ck/start.keras, not ck/other"):
        check_same_run(str(tmp_path), Namespace(**{**saved, "init_checkpoint": "ck/other"}))
    check_same_run(str(tmp_path / "missing"), same)  # no config.json: nothing to compare
