"""The Raspberry Pi bundle (make_pi_bundle.py, kws/pibundle.py) and its runtime's bad input.

The bundle is unpacked into an empty folder and run in a venv of nothing but its
requirements-pi.txt (the x86 wheels of the same pins, no TensorFlow; built once under
~/.cache/kws-pi and reused): the Pi script on generated clips, label_stream.py on a stream, and
every bad input the issue names. Those tests carry the `pi` marker and skip when the venv is not
built yet and PyPI cannot be reached. The ARM64 run itself is `make arm-check` (arm_check.py).
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from kws.armcheck import compare_probabilities, synthetic_clips
from kws.audio import write_wav
from kws.common import UserError
from kws.pibundle import (
    REQUIREMENTS,
    build_bundle,
    check_light,
    kws_closure,
    pinned,
    pinned_venv,
    project_version,
    pypi_reachable,
    requirements_key,
    unpack,
)
from kws.shipped import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
HEAVY_BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "scipy", "pandas", "matplotlib",
                                  "librosa", "soxr", "ray", "model"):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The shipped model's bundle, built and unpacked into an empty folder."""
    tmp = tmp_path_factory.mktemp("bundle")
    archive = build_bundle([DEFAULT_MODEL], tmp / "dist")
    return {"archive": Path(archive), "dir": Path(unpack(archive, tmp / "unpacked")),
            "tmp": tmp}


def test_bundle_holds_the_runtime_models_and_docs(bundle):
    version = project_version()
    assert bundle["archive"].name == f"kws-pi-{version}.tar.gz"
    root = bundle["dir"]
    assert root.name == f"kws-pi-{version}"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    modules = kws_closure()
    assert {"kws/__init__.py", "kws/audio.py", "kws/runtime.py", "kws/streaming.py",
            "kws/frontend.py", "kws/labels.py", "kws/common.py"} <= set(modules)
    assert not {"kws/probs.py", "kws/recipe.py", "kws/pibundle.py", "kws/armcheck.py"} \
        & set(modules)
    assert files == sorted([
        "README.md", "bundle.json", "kws-spotter.service", "label_stream.py",
        "make_submission_on_rpi.py", REQUIREMENTS, "requirements-pi-armv7.txt", *modules,
        "models/edge_int8.tflite",
        "models/edge_labels.txt", "models/edge_stream.npz",
        "models/edge_stream_body_int8.tflite", "models/edge_streaming.json"])
    assert (root / REQUIREMENTS).read_bytes() == (REPO / REQUIREMENTS).read_bytes()
    manifest = json.loads((root / "bundle.json").read_text())
    assert manifest["models"] == ["models/edge_int8.tflite"]
    assert manifest["runtime"]["aarch64"]["ai-edge-litert"] == "2.3.0"
    assert manifest["runtime"]["armv7l"]["tflite-runtime"] == "2.14.0"
    for name, digest in manifest["files"].items():
        import hashlib

        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name
    readme = (root / "README.md").read_text()
    for needed in ("pip install -r requirements-pi.txt", "make_submission_on_rpi.py",
                   "arecord", "--raw -", "systemctl", "64-bit", "armv7",
                   "pip install -r requirements-pi-armv7.txt", "--system-site-packages"):
        assert needed in readme, needed
    assert "@" not in readme.replace("@@", "")  # every placeholder filled
    unit = (root / "kws-spotter.service").read_text()
    assert "ExecStart=" in unit and "label_stream.py --raw -" in unit and "@" not in unit
    with tarfile.open(bundle["archive"]) as tar:
        assert {m.uid for m in tar.getmembers()} == {0}


def test_bundle_is_reproducible(bundle, tmp_path):
    again = build_bundle([DEFAULT_MODEL], tmp_path)
    assert Path(again).read_bytes() == bundle["archive"].read_bytes()


def test_bundle_modules_import_and_run_with_tensorflow_blocked(bundle):
    """Every bundled module and both scripts import, and the shipped model labels a clip and a
    stream, with TensorFlow, scipy, pandas and the rest made unimportable."""
    root = bundle["dir"]
    write_wav(bundle["tmp"] / "tone.wav", 0.3 * np.sin(np.arange(16000) / 5).astype(np.float32))
    modules = [p.relative_to(root).with_suffix("").as_posix().replace("/", ".")
               .removesuffix(".__init__") for p in (root / "kws").glob("*.py")]
    code = HEAVY_BLOCKER + f"""
import importlib
for name in {sorted(modules)!r} + ["make_submission_on_rpi", "label_stream"]:
    importlib.import_module(name)
from kws.audio import read_wav
from kws.runtime import load_model, load_streaming_model, CachedFeaturesModel
model, labels = load_model("models/edge_int8.tflite")
probs = model.predict(read_wav({str(bundle["tmp"] / "tone.wav")!r}))
stream, _ = load_streaming_model("models/edge_int8.tflite")
assert isinstance(stream, CachedFeaturesModel)
print(labels[int(probs.argmax())], len(labels))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "12"


def test_a_module_level_heavy_import_is_refused(tmp_path):
    (tmp_path / "kws").mkdir()
    (tmp_path / "kws" / "light.py").write_text("import os\n\ndef f():\n    import scipy\n")
    (tmp_path / "kws" / "heavy.py").write_text("import numpy as np\nimport tensorflow as tf\n")
    check_light(tmp_path, ["kws/light.py"])
    with pytest.raises(UserError, match="kws/heavy.py imports tensorflow at module level"):
        check_light(tmp_path, ["kws/light.py", "kws/heavy.py"])


@pytest.mark.parametrize("settings, message", [
    ('{"stride_ms": 30, "detection_thr', "m_streaming.json: not a streaming settings file"),
    ('[30, 500]', "m_streaming.json: not a streaming settings file"),
    ('{"stride_ms": 0}', "m_streaming.json: streaming settings: stride_ms must be in"),
])
def test_bad_streaming_settings_stop_the_bundle(tmp_path, settings, message):
    import shutil

    shutil.copy(DEFAULT_MODEL, tmp_path / "m.tflite")
    shutil.copy(REPO / "models" / "edge_labels.txt", tmp_path / "m_labels.txt")
    (tmp_path / "m_streaming.json").write_text(settings)
    with pytest.raises(UserError, match=message) as e:
        build_bundle([str(tmp_path / "m.tflite")], tmp_path / "dist")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "dist").exists() or os.listdir(tmp_path / "dist") == []


def test_requirements_pi_lock_matches_its_inputs():
    locked = pinned(REPO / REQUIREMENTS)
    direct = pinned(REPO / "requirements-pi.in")
    assert direct.items() <= locked.items()
    main = pinned(REPO / "requirements.txt")
    for name, version in locked.items():  # the Pi runs what the tests run
        assert main[name] == version, name
    assert "tensorflow" not in locked and "scipy" not in locked


# ---- bad input, in this environment ---------------------------------------------------------
def newer_model(tmp_path):
    """The shipped model with one operator's version raised past any runtime's: what a model
    frozen for a future LiteRT looks like to an older one."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    data = Path(DEFAULT_MODEL).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    model.operatorCodes[0].version = 99
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "future_int8.tflite"
    path.write_bytes(bytes(builder.Output()))
    (tmp_path / "future_labels.txt").write_bytes(
        (REPO / "models" / "edge_labels.txt").read_bytes())
    return path


def test_a_model_for_a_newer_runtime_names_the_installed_one(tmp_path):
    from kws.runtime import load_model, runtime_version

    with pytest.raises(UserError) as error:
        load_model(str(newer_model(tmp_path)))
    message = str(error.value)
    assert "\n" not in message
    assert ("frozen for a newer runtime than the installed ai-edge-litert "
            f"{runtime_version('ai-edge-litert')}") in message
    assert "pip install --upgrade ai-edge-litert" in message and "version '99'" in message


def test_a_clip_at_another_rate_without_scipy_stops_with_one_line(tmp_path, monkeypatch):
    from kws.audio import read_wav, stream_wav

    write_wav(tmp_path / "a.wav", np.zeros(44100, np.float32), sample_rate=44100)
    monkeypatch.setitem(sys.modules, "scipy.signal", None)
    monkeypatch.setitem(sys.modules, "soxr", None)
    with pytest.raises(UserError, match=r"a.wav is at 44100 Hz: resampling it to 16000 Hz needs "
                                        r"scipy \(pip install scipy\)"):
        read_wav(tmp_path / "a.wav")
    with pytest.raises(UserError, match="needs soxr"):
        list(stream_wav(tmp_path / "a.wav"))


def test_comparison_accepts_rounding_and_refuses_a_real_difference():
    labels = ["a", "b", "c"]
    step = 1 / 256
    x86 = {"same": np.array([0.5, 0.3, 0.2]), "edge": np.array([0.45, 0.44, 0.11])}
    envelope = {"same": (x86["same"], x86["same"]),
                "edge": (np.array([0.40, 0.40, 0.10]), np.array([0.48, 0.47, 0.12]))}
    ok = {"same": x86["same"] + [step, -step, 0], "edge": np.array([0.42, 0.47, 0.11])}
    result = compare_probabilities(x86, ok, labels, envelope)
    assert result["ok"] and result["label_differences"] == ["edge"]
    assert not result["label_differences_beyond_envelope"]
    bad = {"same": np.array([0.3, 0.5, 0.2]), "edge": x86["edge"]}
    result = compare_probabilities(x86, bad, labels, envelope)
    assert not result["ok"]
    assert result["rows_beyond_envelope"] == ["same"]
    assert result["label_differences_beyond_envelope"] == ["same"]
    assert not compare_probabilities(x86, {"same": x86["same"]}, labels)["ok"]


def test_kernel_spread_is_how_far_other_kernels_move_the_model_from_one_run():
    from kws.armcheck import kernel_spread

    runs = {"x86": {"1": np.array([0.70, 0.30]), "2": np.array([0.2, 0.8]), "3": None},
            "b": {"1": np.array([0.68, 0.32]), "2": np.array([0.25, 0.75]), "3": None},
            "c": {"1": np.array([0.74, 0.26]), "2": np.array([0.2, 0.8]),
                  "3": np.array([1.0, 0.0])}}
    # b moves its rows by 0.02 and 0.05, c by 0.04 and 0 (c is 0.06 from b, which does not
    # count: only moves from x86's run do); a row one run has no answer for is left out
    spread = kernel_spread(runs, "x86")
    assert spread["worst"] == pytest.approx(0.05) and spread["farthest"] == "b"
    assert spread["typical"] == pytest.approx(0.02 + 0.95 * 0.03)  # b's 95th percentile
    assert kernel_spread({"x86": runs["x86"]}, "x86")["farthest"] is None
    with pytest.raises(UserError, match="the short run has other rows"):
        kernel_spread({"x86": runs["x86"], "short": {"1": runs["b"]["1"]}}, "x86")


def test_a_differently_rounding_runtime_is_judged_by_x86s_kernel_spread(capsys):
    from kws.armcheck import INT8_STEP, compare_detections, compare_within_spread
    from kws.armrun import report

    labels = ["a", "b"]
    x86 = {str(i): np.array([0.70, 0.30]) for i in range(40)}
    spread = {"worst": 0.04, "typical": 0.02, "farthest": "rt builtin"}

    def moved(by, rows=None):
        """x86 with rows (default: all) moved by `by` towards b."""
        return {n: p + ([-by, by] if rows is None or n in rows else 0) for n, p in x86.items()}

    near = moved(0.01)
    near["0"] = x86["0"] + [-0.05, 0.05]   # one row past the spread's worst, under 1.5x it
    result = compare_within_spread(x86, near, labels, spread)
    assert result["ok"] and result["typical_difference"] == pytest.approx(0.01)
    assert result["tolerance"] == pytest.approx(1.5 * 0.04 + INT8_STEP)
    # a worst row past 1.5x the spread fails, and so does a typical row past the spread's
    # typical one even when no row is past its worst
    assert not compare_within_spread(x86, moved(0.01) | {"0": x86["0"] + [-0.07, 0.07]},
                                     labels, spread)["ok"]
    result = compare_within_spread(x86, moved(0.03), labels, spread)
    assert not result["ok"] and result["max_abs_difference"] < spread["worst"]
    # a top label may change where x86's top two are within twice the worst plus a step
    tied = x86 | {"0": np.array([0.52, 0.48])}
    flipped = x86 | {"0": np.array([0.49, 0.51])}              # 0.03 away
    result = compare_within_spread(tied, flipped, labels, spread)
    assert result["ok"] and result["label_differences"] == ["0"]
    assert not result["label_differences_beyond_a_tie"]
    apart = x86 | {"0": np.array([0.55, 0.45])}                # a gap of 0.10 > 0.088
    result = compare_within_spread(apart, flipped, labels, spread)  # 0.06 away: allowed
    assert result["label_differences_beyond_a_tie"] == ["0"] and not result["ok"]
    # the report says what was allowed and by what
    row = compare_within_spread(x86, near, labels, spread)
    run = {"wall_seconds": 1.0, "latency_ms_median": 2.0, "peak_rss_mib": 50.0}
    report({"ok": True, "arches": {"armhf": {
        "qemu_cpu": "cortex-a7", "requirements": "requirements-pi-armv7.txt", "timed": {},
        "ok": True, "runs": {"x86": {"clips": run, "stream": run}},
        "compare": {"clips": row, "stream_hops": row,
                    "detections": compare_detections([], [])}}}})
    out = capsys.readouterr().out
    assert "largest difference 0.050000 (allowed 0.063906), 95% of rows within 0.010000 " \
        "(allowed 0.023906): x86's other int8 kernels move it by up to 0.040000 (rt builtin), " \
        "95% of rows within 0.020000" in out
    assert "ARM check passed" in out


def test_detections_of_a_differently_rounding_runtime():
    from kws.armcheck import compare_detections, largest_shift

    found = [(2400, "stop", 0.52), (6120, "up", 0.51)]
    moved = [(2380, "stop", 0.50), (6120, "up", 0.52)]
    assert not compare_detections(found, moved)["ok"]
    assert compare_detections(found, moved, tolerance=1.0, shift_ms=20)["ok"]
    assert not compare_detections(found, [(2380, "go", 0.5), (6120, "up", 0.5)], 1.0, 20)["ok"]
    # a detection scoring within the runtimes' gap of the threshold may move, change or vanish
    marginal = [(2400, "stop", 0.62), (4560, "unknown", 0.5006), (6120, "up", 0.61)]
    shifted = [(2400, "stop", 0.62), (4480, "off", 0.5056), (6120, "up", 0.62)]
    assert not compare_detections(marginal, shifted, 1.0, 20)["ok"]
    result = compare_detections(marginal, shifted, 1.0, 20, marginal_below=0.59)
    assert result["ok"] and result["marginal_left_out"] == 2 and result["x86"] == 2
    assert compare_detections(marginal, [shifted[0], shifted[2]], 1.0, 20, 0.59)["ok"]
    assert not compare_detections(marginal, shifted[:2], 1.0, 20, marginal_below=0.59)["ok"]
    assert largest_shift(found, moved) == 20
    assert largest_shift(found, moved[:1]) is None


FAKE_APT = """#!/bin/sh
# apt-get update as a mirror caught mid-sync answers it: the lists of $FAIL_URL fail
echo "Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]"
echo "E: Failed to fetch $FAIL_URL/binary-armhf/Packages.xz  File has unexpected size \
(356624 != 356976). Mirror sync in progress? [IP: 203.0.113.80 80]" >&2
echo "E: Some index files failed to download. They have been ignored, or old ones used \
instead." >&2
exit 100
"""


@pytest.mark.parametrize("fail, left_out", [
    ("http://deb.debian.org/debian-security/dists/bookworm-security/main", True),
    ("http://deb.debian.org/debian/dists/bookworm/main", False),  # the packages themselves
    ("http://elsewhere.example/dists/x/main", False),  # a failure apt names no source of
])
def test_apt_lists_a_mirror_cannot_serve_are_left_out_only_when_optional(
        tmp_path, monkeypatch, capsys, fail, left_out):
    from kws import armcheck

    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text(FAKE_APT)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAIL_URL", fail)
    apt = tmp_path / "apt"
    if left_out:
        options = armcheck.private_apt(str(apt), "armhf", armcheck.MIRRORS,
                                       optional=armcheck.OPTIONAL_MIRRORS)
        assert f"Dir::State::Lists={apt}/lists" in options
        said = capsys.readouterr().err
        assert "left out http://deb.debian.org/debian-security bookworm-security main" in said
        assert "Mirror sync in progress?" in said and said.count("\n") == 1
    else:
        with pytest.raises(UserError, match="apt-get update .* failed: E: Some index files"):
            armcheck.private_apt(str(apt), "armhf", armcheck.MIRRORS,
                                 optional=armcheck.OPTIONAL_MIRRORS)
    sources = (apt / "sources.list").read_text().splitlines()
    assert len(sources) == 2 and all("[arch=armhf signed-by=" in line for line in sources)


def test_debian_alternatives_are_linked_as_dpkg_would(tmp_path):
    from kws.armcheck import apt_pins, link_alternatives

    blas = tmp_path / "usr" / "lib" / "arm-linux-gnueabihf" / "blas"
    blas.mkdir(parents=True)
    (blas / "libblas.so.3").write_bytes(b"elf")
    link_alternatives(tmp_path)
    link = blas.parent / "libblas.so.3"
    assert link.is_symlink() and link.read_bytes() == b"elf"
    assert os.readlink(link) == "blas/libblas.so.3"
    (tmp_path / "r.txt").write_text("numpy==1.24.2  # apt: python3-numpy\n    # via x\n"
                                    "tqdm==4.70.1\n")
    assert apt_pins(tmp_path / "r.txt") == {"numpy": "python3-numpy"}


# ---- the unpacked bundle in a venv of its own requirements only ------------------------------
@pytest.fixture(scope="module")
def pi_python():
    """The python of a venv of exactly requirements-pi.txt (cached; built on first use)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = requirements_key(REPO / REQUIREMENTS, version)
    cached = Path.home() / ".cache" / "kws-pi" / f"venv-py{version}-{key}" / ".complete"
    if not cached.exists() and not pypi_reachable():
        pytest.skip("the Pi runtime's venv is not built and PyPI cannot be reached")
    return pinned_venv(str(REPO / REQUIREMENTS))


def run_in(python, root, *args, stdin=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([python, *map(str, args)], cwd=root, capture_output=True,
                          input=stdin, env={**env, "PYTHONNOUSERSITE": "1"}, timeout=300)


def one_line_error(done):
    lines = [ln for ln in done.stderr.decode().strip().splitlines() if ln
             and not ln.startswith("INFO: Created TensorFlow Lite")]
    assert done.returncode == 2, done.stderr.decode()[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.pi
@pytest.mark.parametrize("lock,package", [(REQUIREMENTS, "ai-edge-litert"),
                                          ("requirements-pi-armv7.txt", "tflite-runtime")])
def test_shipped_models_load_with_each_pinned_runtime(lock, package, request):
    """Every .tflite in models/ loads and runs with each runtime version the bundle pins, in a
    venv of that lock only: LiteRT 2.3.0 (64-bit) and tflite-runtime 2.14.0 (32-bit, the
    oldest: a model using an op version newer than it knows would fail here)."""
    pins = pinned(REPO / lock)
    python = request.getfixturevalue("pi_python" if lock == REQUIREMENTS else "armv7_python")
    module = package.replace("-", "_") + ".interpreter"
    code = f"""
import sys, numpy as np
from importlib.metadata import version
from {module} import Interpreter
print(version("{package}"))
for path in sys.argv[1:]:
    it = Interpreter(model_path=path)
    it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    it.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
    it.invoke()
    probs = it.get_tensor(out["index"]).reshape(-1)
    assert probs.shape == (12,) and abs(probs.sum() - 1) < 0.05, (path, probs)
"""
    models = sorted((REPO / "models").glob("*.tflite"))
    assert len(models) == 2
    done = run_in(python, REPO, "-c", code, *models)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split()[0] == pins[package]


@pytest.mark.pi
def test_unpacked_bundle_runs_with_only_its_requirements(pi_python, bundle, tmp_path):
    root = bundle["dir"]
    assert run_in(pi_python, root, "-c", "import tensorflow").returncode != 0
    assert run_in(pi_python, root, "-c", "import scipy").returncode != 0
    clips = synthetic_clips(tmp_path / "clips", count=6)
    done = run_in(pi_python, root, "make_submission_on_rpi.py", "--model",
                  "models/edge_int8.tflite", "--test_data", tmp_path / "clips",
                  "--submission_fn", tmp_path / "labels.csv", "--probs_csv",
                  tmp_path / "probs.csv")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    rows = (tmp_path / "labels.csv").read_text().splitlines()
    assert rows[0] == "fname,label" and len(rows) == 1 + len(clips)
    labels = (root / "models" / "edge_labels.txt").read_text().split()
    probs = (tmp_path / "probs.csv").read_text().splitlines()
    assert probs[0].split(",") == ["fname", *labels]
    for row in probs[1:]:
        assert abs(sum(map(float, row.split(",")[1:])) - 1) < 0.05
    stream = np.concatenate([np.zeros(4000), np.sin(np.arange(24000) / 7) * 0.3,
                             np.zeros(8000)])
    raw = (stream * 32767).astype("<i2").tobytes()
    done = run_in(pi_python, root, "label_stream.py", "--raw", "-", "--quiet", "--csv",
                  tmp_path / "det.csv", "--scores_csv", tmp_path / "scores.csv", stdin=raw)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert (tmp_path / "det.csv").read_text().startswith("time_ms,label,score\n")
    hops = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(hops) > 50 and hops[0] == "time_ms," + ",".join(labels)
    assert "detections in 2.2 s of audio" in done.stderr.decode()


@pytest.mark.pi
def test_bundle_bad_input_gets_one_line_and_writes_nothing(pi_python, bundle, tmp_path):
    import shutil

    root = tmp_path / "kws-pi"
    shutil.copytree(bundle["dir"], root)
    clips = tmp_path / "clips"
    synthetic_clips(clips, count=2)
    out = tmp_path / "out"
    out.mkdir()

    # no microphone: arecord fails and the pipe is empty; --mic without sounddevice
    line = one_line_error(run_in(pi_python, root, "label_stream.py", "--raw", "-", "--csv",
                                 out / "det.csv", stdin=b""))
    assert "no audio on standard input" in line
    line = one_line_error(run_in(pi_python, root, "label_stream.py", "--mic", "--csv",
                                 out / "det.csv"))
    assert "--mic needs the sounddevice package" in line

    # a clip at another rate, with no resampler in the bundle's runtime
    write_wav(clips / "cd.wav", np.zeros(44100, np.float32), sample_rate=44100)
    line = one_line_error(run_in(pi_python, root, "make_submission_on_rpi.py", "--model",
                                 "models/edge_int8.tflite", "--test_data", clips,
                                 "--submission_fn", out / "sub.csv", "--probs_csv",
                                 out / "probs.csv"))
    assert "cd.wav is at 44100 Hz" in line and "pip install scipy" in line
    (clips / "cd.wav").unlink()
    raw_44k = tmp_path / "cd44.wav"
    write_wav(raw_44k, np.zeros(44100, np.float32), sample_rate=44100)
    line = one_line_error(run_in(pi_python, root, "label_stream.py", "--wav", raw_44k,
                                 "--csv", out / "det.csv"))
    assert "is at 44100 Hz" in line and "soxr" in line

    # a model frozen for a newer runtime than the installed one
    future = newer_model(root / "models")
    line = one_line_error(run_in(pi_python, root, "make_submission_on_rpi.py", "--model",
                                 future, "--test_data", clips, "--submission_fn",
                                 out / "sub.csv"))
    assert "frozen for a newer runtime than the installed ai-edge-litert 2.3.0" in line
    assert "pip install --upgrade ai-edge-litert" in line

    # the model missing from the bundle (label_stream.py's default is the bundled model)
    (root / "models" / "edge_int8.tflite").unlink()
    line = one_line_error(run_in(pi_python, root, "label_stream.py", "--raw", "-", "--csv",
                                 out / "det.csv", stdin=b"\0\0" * 16000))
    assert "model not found" in line and "edge_int8.tflite" in line
    line = one_line_error(run_in(pi_python, root, "make_submission_on_rpi.py", "--model",
                                 "models/edge_int8.tflite", "--test_data", clips,
                                 "--submission_fn", out / "sub.csv"))
    assert "model not found: models/edge_int8.tflite" in line

    assert sorted(os.listdir(out)) == []  # nothing written, not even a temp file


@pytest.mark.pi
def test_every_pin_has_an_arm_wheel_or_a_debian_package(tmp_path):
    """requirements-pi.txt resolves for a 64-bit Pi (aarch64, CPython 3.11) as it stands, and
    requirements-pi-armv7.txt for a 32-bit one, but for its `# apt:` pins, which PyPI has no
    armv7l wheel of (the README's reasons still hold)."""
    if not pypi_reachable():
        pytest.skip("PyPI cannot be reached")
    from kws.armcheck import PYTHON_VERSION, apt_pins, wheel_platforms

    def resolve(platforms, *requirements):
        return subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
             "--ignore-installed", "--target", str(tmp_path / "t"), "--only-binary=:all:",
             "--python-version", PYTHON_VERSION, "--implementation", "cp",
             *[a for p in platforms for a in ("--platform", p)], *requirements],
            capture_output=True, text=True, timeout=300)

    done = resolve(wheel_platforms(), "-r", str(REPO / REQUIREMENTS))
    assert done.returncode == 0, done.stderr[-2000:]
    # ai-edge-litert 2.x's aarch64 wheels are manylinux_2_27: asking for manylinux2014 alone (as
    # the issue did) finds none and suggests 1.4.0 is the newest; a Pi's pip takes 2.3.0
    assert resolve(["manylinux2014_aarch64"], "ai-edge-litert==2.3.0").returncode != 0
    assert resolve(["manylinux_2_27_aarch64"], "ai-edge-litert==2.3.0").returncode == 0
    armv7 = wheel_platforms("armhf")
    apt = apt_pins(REPO / "requirements-pi-armv7.txt")
    assert set(apt) == {"numpy", "cffi", "pycparser"}
    wheels = [f"{n}=={v}" for n, v in pinned(REPO / "requirements-pi-armv7.txt").items()
              if n not in apt]
    done = resolve(armv7, *wheels)
    assert done.returncode == 0, done.stderr[-2000:]
    for package in ("ai-edge-litert", "numpy", "cffi"):  # no armv7l wheel of any version
        assert resolve(armv7, package).returncode != 0, package


@pytest.fixture(scope="module")
def armv7_python():
    """A venv of requirements-pi-armv7.txt's versions from PyPI (x86): tflite-runtime 2.14.0,
    numpy 1.24.2, no ai-edge-litert."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    requirements = REPO / "requirements-pi-armv7.txt"
    key = requirements_key(requirements, version)
    cached = Path.home() / ".cache" / "kws-pi" / f"venv-py{version}-{key}" / ".complete"
    if not cached.exists() and not pypi_reachable():
        pytest.skip("the 32-bit runtime's venv is not built and PyPI cannot be reached")
    return pinned_venv(str(requirements))


@pytest.mark.pi
def test_bundle_runs_on_the_32_bit_runtime(armv7_python, bundle, tmp_path):
    """kws.runtime falls back to tflite-runtime, the only runtime 32-bit ARM has: the shipped
    models load and label with it, and a too-new model names it."""
    root = bundle["dir"]
    assert run_in(armv7_python, root, "-c", "import ai_edge_litert").returncode != 0
    synthetic_clips(tmp_path / "clips", count=3)
    done = run_in(armv7_python, root, "make_submission_on_rpi.py", "--model",
                  "models/edge_int8.tflite", "--test_data", tmp_path / "clips",
                  "--submission_fn", tmp_path / "labels.csv")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert len((tmp_path / "labels.csv").read_text().splitlines()) == 4
    raw = (np.sin(np.arange(32000) / 7) * 9000).astype("<i2").tobytes()
    done = run_in(armv7_python, root, "label_stream.py", "--raw", "-", "--quiet", "--csv",
                  tmp_path / "det.csv", stdin=raw)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    future = newer_model(tmp_path)
    line = one_line_error(run_in(armv7_python, root, "make_submission_on_rpi.py", "--model",
                                 future, "--test_data", tmp_path / "clips", "--submission_fn",
                                 tmp_path / "out.csv"))
    assert "frozen for a newer runtime than the installed tflite-runtime 2.14.0" in line
    assert "pip install --upgrade tflite-runtime" in line
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.pi
def test_bundle_build_refuses_a_model_the_pinned_runtimes_cannot_load(pi_python, armv7_python,
                                                                      tmp_path):
    from kws.pibundle import check_pinned_runtimes

    found = check_pinned_runtimes([DEFAULT_MODEL])
    assert found == {REQUIREMENTS: "ai-edge-litert 2.3.0",
                     "requirements-pi-armv7.txt": "tflite-runtime 2.14.0"}
    with pytest.raises(UserError) as error:
        check_pinned_runtimes([str(newer_model(tmp_path))])
    message = str(error.value)
    assert message.startswith("a model does not load with requirements-pi.txt's runtime: ")
    assert "frozen for a newer runtime than the installed ai-edge-litert 2.3.0" in message
