"""train.py on several devices and workers, without GPUs: MirroredStrategy over two logical CPU
devices, MultiWorkerMirroredStrategy over two processes on 127.0.0.1, TF_CONFIG checks, and a
worker killed mid-run (the run fails in one line and resumes on another worker count)."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_speech_commands

REPO = Path(__file__).resolve().parents[1]
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "cat", "dog"]
FLAGS = ["--epochs", "2", "--steps_per_epoch", "3"]
TIMEOUT = 240  # seconds a run may take before the test fails (and kills it)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_data")
    return make_speech_commands(root / "sc", WORDS, [f"{i:08x}" for i in range(12)])


def command(tmp, data, *flags):
    return [sys.executable, str(REPO / "train.py"), "--config",
            str(REPO / "experiments/smoke.json"),
            "--data_dir", str(data), "--checkpoint_dir", str(tmp / "ck"), "--log_dir",
            str(tmp / "logs"), *map(str, flags)]


def environment(tmp=None, tf_config=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CI="1")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config if isinstance(tf_config, str) else json.dumps(tf_config)
    if tmp is not None:
        env["TMPDIR"] = str(tmp)  # where a non-chief worker's scratch folder goes
    return env


def train(tmp, data, *flags, check=True, tf_config=None):
    done = subprocess.run(command(tmp, data, *flags), cwd=REPO, env=environment(
        tf_config=tf_config), capture_output=True, text=True, timeout=TIMEOUT)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def log_rows(tmp):
    with open(tmp / "logs" / "smoke" / "log.csv") as f:
        return [{k: float(v) for k, v in row.items() if k != "examples_per_second"}
                for row in csv.DictReader(f)]


def weights(path):
    import keras

    import kws.layers  # noqa: F401
    return keras.models.load_model(path, compile=False, safe_mode=True).get_weights()


def assert_close_runs(a, b, tol=1e-3):
    """Same epochs, losses within tol, accuracies within one clip, and the two runs' weights
    closer than a fifth of what the last epoch moved them. (A rounding difference can flip a
    near tie: one of the 48 training clips of an
    epoch moves accuracy by 0.021, as TensorFlow's own kernels, oneDNN off, do here. Adam
    divides by the root of tiny second moments in its first steps, so such a difference in
    one gradient can move a single weight by up to a learning rate: at most 5e-3 here.)"""
    rows_a, rows_b = log_rows(a), log_rows(b)
    assert len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b):
        assert ra.keys() == rb.keys()
        for key in ra:
            limit = 1 / 39 + 1e-6 if "accuracy" in key else tol  # 48 training, 39 val clips
            assert ra[key] == pytest.approx(rb[key], abs=limit), (key, ra, rb)
    def flat(path):
        return np.concatenate([w.ravel() for w in weights(path)])

    wa, wb = flat(a / "ck/smoke/last.keras"), flat(b / "ck/smoke/last.keras")
    moved = np.abs(wa - flat(next((a / "ck/smoke").glob("ep-001-*.keras")))).mean()
    assert np.abs(wa - wb).mean() < 0.2 * moved, (np.abs(wa - wb).mean(), moved)
    assert np.abs(wa - wb).max() < 5e-3


@pytest.fixture(scope="module")
def single(tmp_path_factory, data):
    """The reference: one device, the same global batch (the smoke recipe's 16)."""
    tmp = tmp_path_factory.mktemp("single")
    train(tmp, data, *FLAGS)
    return tmp


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(tmp, data, *flags, workers=2):
    addresses = [f"127.0.0.1:{p}" for p in free_ports(workers)]
    runs = []
    for index in range(workers):
        config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        log = open(tmp / f"worker{index}.log", "w")
        runs.append(subprocess.Popen(command(tmp, data, "--strategy", "multi_worker", *flags),
                                     cwd=REPO, env=environment(tmp, config), stdout=log,
                                     stderr=subprocess.STDOUT))
    return runs


def wait_all(runs, timeout=TIMEOUT):
    deadline = time.time() + timeout
    try:
        return [run.wait(max(deadline - time.time(), 1)) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()


def test_mirrored_on_two_cpu_devices_ends_where_one_device_does(tmp_path, data, single):
    done = train(tmp_path, data, *FLAGS, "--strategy", "mirrored", "--cpu_devices", "2")
    assert "mirrored: 2 replicas; global batch 16 (8 a replica)" in done.stdout
    assert_close_runs(single, tmp_path)
    state = json.loads((tmp_path / "ck/smoke/state.json").read_text())
    assert state["replicas"] == 2 and state["epoch"] == 2


def test_two_workers_on_localhost_train_as_one_and_only_the_chief_writes(tmp_path, data, single):
    codes = wait_all(start_workers(tmp_path, data, *FLAGS))
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], [log[-2000:] for log in logs]
    assert "2 replicas over 2 workers, this one worker 1" in logs[1]
    exp = tmp_path / "ck" / "smoke"
    assert {"state.json", "last.keras", "config.json", "labels.txt"} <= set(os.listdir(exp))
    assert sorted(os.listdir(exp / "resume")) == ["model-002.keras", "optimizer-002.npz"]
    assert any(p.name.startswith("events") for p in (tmp_path / "logs" / "smoke").rglob("*"))
    assert not list(tmp_path.glob("kws-worker-*"))  # the other worker's scratch folder is gone
    assert_close_runs(single, tmp_path)


def test_a_worker_killed_mid_run_fails_the_run_in_one_line_and_it_resumes_on_one(tmp_path, data):
    flags = ["--epochs", "40", "--steps_per_epoch", "3"]
    runs = start_workers(tmp_path, data, *flags)
    state = tmp_path / "ck" / "smoke" / "state.json"
    deadline = time.time() + TIMEOUT
    while not state.exists() and time.time() < deadline and runs[0].poll() is None:
        time.sleep(0.1)
    assert state.exists(), (tmp_path / "worker0.log").read_text()[-2000:]
    runs[1].send_signal(signal.SIGKILL)
    codes = wait_all(runs, timeout=120)
    assert codes[0] == 2, (tmp_path / "worker0.log").read_text()[-2000:]
    log = (tmp_path / "worker0.log").read_text()
    assert "Traceback" not in log
    last = log.strip().splitlines()[-1]
    assert last.startswith("error: a worker failed or was lost") and "--resume" in last, last
    committed = json.loads(state.read_text())["epoch"]
    assert committed >= 1
    # Resume on one device: weights and optimizer come from the chief's files.
    done = train(tmp_path, data, "--epochs", str(committed + 1), "--steps_per_epoch", "3",
                 "--resume")
    assert f"after epoch {committed + 1} of {committed + 1}" in done.stdout
    assert json.loads(state.read_text())["epoch"] == committed + 1
    assert len(log_rows(tmp_path)) == committed + 1


@pytest.mark.parametrize("tf_config, fragment", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not JSON"),
    ({"task": {"type": "worker", "index": 0}}, 'needs a "cluster"'),
    ({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}},
     "not supported"),
    ({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}},
     "is not host:port"),
    ({"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}},
     "listed twice"),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}},
     "task.index must be 0..1"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     "task.type must be one of"),
])
def test_a_wrong_tf_config_is_one_line(tf_config, fragment):
    from kws.common import UserError
    from kws.train.cluster import parse_tf_config

    text = tf_config if tf_config is None or isinstance(tf_config, str) else json.dumps(tf_config)
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        parse_tf_config(text)


def test_the_chief_is_the_chief_task_or_else_worker_zero():
    from kws.train.cluster import parse_tf_config

    two = {"worker": ["a:1", "b:1"]}
    assert parse_tf_config(json.dumps({"cluster": two, "task": {"type": "worker", "index": 0}}))[
        "is_chief"]
    assert not parse_tf_config(json.dumps({"cluster": two, "task": {"type": "worker",
                                                                   "index": 1}}))["is_chief"]
    chief = {"chief": ["c:1"], "worker": ["a:1"]}
    info = parse_tf_config(json.dumps({"cluster": chief, "task": {"type": "worker", "index": 0}}))
    assert not info["is_chief"] and info["workers"] == 2
    assert parse_tf_config(json.dumps({"cluster": chief, "task": {"type": "chief", "index": 0}}))[
        "is_chief"]


def test_bad_tf_config_and_flags_exit_2_before_anything_is_written(tmp_path, data):
    done = train(tmp_path, data, "--strategy", "multi_worker", check=False,
                 tf_config={"cluster": {"worker": ["127.0.0.1:x"]},
                            "task": {"type": "worker", "index": 0}})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: TF_CONFIG cluster.worker")
    done = train(tmp_path, data, "--cpu_devices", "2", check=False)
    assert done.returncode == 2 and "--cpu_devices" in done.stderr.strip().splitlines()[-1]
    done = train(tmp_path, data, "--strategy", "mirrored", "--cpu_devices", "3", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "must be a multiple of the 3 replicas" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "ck").exists() and not (tmp_path / "logs").exists()
