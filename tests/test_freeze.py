"""freeze_graph.py and make_submission_on_rpi.py: export a small trained model to .pb, .tflite and
int8 .tflite, check each against Keras, and label folders with them the Raspberry Pi way."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import freeze_graph
import make_submission_on_rpi as rpi
from kws.audio import read_wav, write_wav
from kws.calibration import config_data_dirs
from kws.checkpoint import load_checkpoint
from kws.common import UserError
from kws.export import float_ops, label_folding
from kws.labels import COMPETITION_LABELS, submission_label
from kws.runtime import TFLiteModel, load_model
from kws.zoo import build_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CLIPS_PER_LABEL = 8


def tone_clip(k, rng):
    """Class k: a tone at 150*(k+1) Hz (silence for k == 0) plus a little noise."""
    t = np.arange(16000) / 16000
    freq = 150 * (k + 1) * rng.uniform(0.97, 1.03)
    x = 0.3 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)) if k else np.zeros(16000)
    return (x + rng.randn(16000) * 0.01).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A ds_cnn_s trained for a few steps on tones, a <label>/*.wav folder of those tones, and
    the model frozen to all three formats."""
    import keras

    root = tmp_path_factory.mktemp("freeze")
    rng = np.random.RandomState(0)
    data = root / "data"
    clips, targets = [], []
    for k, label in enumerate(COMPETITION_LABELS):
        for i in range(CLIPS_PER_LABEL):
            clip = tone_clip(k, rng)
            write_wav(data / label / f"spk{i}_nohash_0.wav", clip)
            clips.append(read_wav(data / label / f"spk{i}_nohash_0.wav"))
            targets.append(k)
    keras.utils.set_random_seed(0)
    net = build_model("ds_cnn_s", len(COMPETITION_LABELS))
    net.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(np.stack(clips), np.array(targets), epochs=4, batch_size=8, verbose=0)
    ckpt = root / "ckpt"
    ckpt.mkdir()
    net.save(ckpt / "model.keras")
    (ckpt / "labels.txt").write_text("\n".join(COMPETITION_LABELS) + "\n")
    out = root / "tf_files"
    code = freeze_graph.main(["--checkpoint_path", str(ckpt / "model.keras"),
                              "--frozen_path", str(out / "frozen.pb"),
                              "--calibration_data", str(data), "--num_calibration", "60",
                              "--num_check", "36"])
    assert code == 0
    keras_model, labels = load_checkpoint(ckpt / "model.keras")
    return {"root": root, "data": data, "ckpt": ckpt / "model.keras", "out": out,
            "keras": keras_model, "labels": labels, "clips": np.stack(clips),
            "targets": np.array(targets)}


def keras_probs(keras_model, clips):
    logits = np.asarray(keras_model(clips, training=False))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_writes_every_file_with_labels_and_info(exported):
    out = exported["out"]
    for name in ("frozen.pb", "frozen.tflite", "frozen_int8.tflite", "frozen_labels.txt",
                 "frozen_info.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "frozen_labels.txt").read_text().split() == COMPETITION_LABELS
    info = json.loads((out / "frozen_info.json").read_text())
    assert info["params"] > 0 and info["macs"] > 0 and info["labels"] == COMPETITION_LABELS
    assert info["files"]["int8"]["size_bytes"] < info["files"]["tflite"]["size_bytes"]
    int8_float = info["int8_float_ops"]
    assert int8_float == float_ops((out / "frozen_int8.tflite").read_bytes())
    assert not {"CONV_2D", "DEPTHWISE_CONV_2D"} & set(int8_float)  # the trunk runs in int8
    assert "CONV_2D" in float_ops((out / "frozen.tflite").read_bytes())
    assert info["checks"]["pb"]["max_abs_diff"] < 1e-4
    assert not list(out.glob(".*part*")), "temporary files left behind"


def test_frozen_graph_has_the_tutorial_interface(exported):
    """label_wav.py's way: GraphDef into tf.compat.v1, WAV bytes into wav_data:0."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((exported["out"] / "frozen.pb").read_bytes())
    ops = {n.name: n.op for n in graph_def.node}
    assert ops["wav_data"] == "Placeholder" and ops["decoded_sample_data"] == "DecodeWav"
    assert "labels_softmax" in ops
    paths = [exported["data"] / label / "spk0_nohash_0.wav" for label in COMPETITION_LABELS]
    samples = np.stack([read_wav(p) for p in paths])
    reference = keras_probs(exported["keras"], samples)
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        for path, clip, ref in zip(paths, samples, reference):
            probs = sess.run("labels_softmax:0", {"wav_data:0": path.read_bytes()})
            assert probs.shape == (1, len(COMPETITION_LABELS))
            np.testing.assert_allclose(probs[0], ref, atol=1e-4)
            fed = sess.run("labels_softmax:0", {"decoded_sample_data:0": clip[:, None]})
            np.testing.assert_allclose(fed[0], ref, atol=1e-4)
        decoded, rate = sess.run(["decoded_sample_data:0", "decoded_sample_data:1"],
                                 {"wav_data:0": paths[3].read_bytes()})
    assert decoded.shape == (16000, 1) and rate == 16000
    np.testing.assert_allclose(decoded[:, 0], samples[3], atol=1e-6)


def test_tflite_float_matches_keras_and_int8_agrees_on_top1(exported):
    reference = keras_probs(exported["keras"], exported["clips"])
    for name, check in (("frozen.tflite", "float"), ("frozen_int8.tflite", "int8")):
        model = TFLiteModel(str(exported["out"] / name))
        probs = np.stack([model.predict(c) for c in exported["clips"]])
        if check == "float":
            assert np.abs(probs - reference).max() < 1e-4
        else:
            agreement = np.mean(probs.argmax(axis=1) == reference.argmax(axis=1))
            assert agreement >= 0.9, agreement
    # the trained model is not degenerate: top-1 means something
    assert np.mean(reference.argmax(axis=1) == exported["targets"]) > 0.5


def test_tflite_kernel_sets_run_the_same_model(exported, monkeypatch):
    """KWS_TFLITE_KERNELS picks the runtime's built-in or reference kernels (the ARM check's
    yardstick): no XNNPACK delegate then, the same int8 model within a few output steps, and a
    clear error for a value it does not know."""
    path = str(exported["out"] / "frozen_int8.tflite")
    clips = exported["clips"][:8]

    def delegated(model):
        return any(op["op_name"] == "DELEGATE" for op in model.interpreter._get_ops_details())

    monkeypatch.setenv("KWS_TFLITE_KERNELS", "")  # empty: the default kernels
    model = TFLiteModel(path)
    default = np.stack([model.predict(c) for c in clips])
    assert delegated(model)
    for kernels in ("builtin", "reference"):
        monkeypatch.setenv("KWS_TFLITE_KERNELS", kernels)
        model = TFLiteModel(path)
        assert not delegated(model)
        probs = np.stack([model.predict(c) for c in clips])
        assert np.abs(probs - default).max() <= 0.1
        np.testing.assert_allclose(probs.sum(axis=1), 1, atol=0.05)
    monkeypatch.setenv("KWS_TFLITE_KERNELS", "fast")
    with pytest.raises(UserError, match="KWS_TFLITE_KERNELS must be one of default, builtin"):
        TFLiteModel(path)


def test_size_guard_refuses_a_large_model(exported, tmp_path):
    args = ["--checkpoint_path", str(exported["ckpt"]), "--frozen_path", str(tmp_path / "m.pb"),
            "--formats", "pb,tflite", "--num_check", "2"]
    with pytest.raises(UserError, match="over the 1,000-byte limit"):
        freeze_graph.main(args + ["--max_bytes", "1000"])
    assert list(tmp_path.iterdir()) == []
    assert freeze_graph.main(args + ["--max_bytes", "1000", "--allow_large"]) == 0
    assert (tmp_path / "m.pb").exists() and (tmp_path / "m.tflite").exists()


def test_cli_exit_codes(exported, tmp_path):
    """A bad flag is one line and exit 2 (the size guard raises the same UserError, tested
    above); a model that disagrees with Keras is exit 1 and writes nothing."""
    bad = subprocess.run([sys.executable, "freeze_graph.py", "--checkpoint_path",
                          str(exported["ckpt"]), "--formats", "pb,onnx"],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: --formats") and bad.stderr.count("\n") == 1
    code = freeze_graph.main(["--checkpoint_path", str(exported["ckpt"]), "--formats", "pb",
                              "--num_check", "2", "--frozen_path", str(tmp_path / "b.pb"),
                              "--float_tolerance", "-1"])
    assert code == 1 and list(tmp_path.iterdir()) == []


def test_int8_needs_calibration_data(exported, tmp_path):
    with pytest.raises(UserError, match="--calibration_data"):
        freeze_graph.main(["--checkpoint_path", str(exported["ckpt"]),
                           "--frozen_path", str(tmp_path / "m.pb")])
    with pytest.raises(UserError, match="calibration folder not found"):
        freeze_graph.main(["--checkpoint_path", str(exported["ckpt"]), "--frozen_path",
                           str(tmp_path / "m.pb"), "--calibration_data", str(tmp_path / "no")])


def test_config_data_dir_is_the_calibration_fallback(exported, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"data_dir": str(exported["data"])}))
    assert config_data_dirs(tmp_path / "model.keras") == [str(exported["data"])]
    (tmp_path / "config.json").write_text(json.dumps({"data_dir": str(tmp_path / "gone")}))
    assert config_data_dirs(tmp_path / "model.keras") == []


def test_calibration_draws_only_on_the_training_side_of_a_split(tmp_path):
    from conftest import make_speech_commands

    from kws.calibration import config_split, find_clips
    from kws.folders import speaker_id, which_set

    speakers = [f"{i:08x}" for i in range(30)]
    plain = make_speech_commands(tmp_path / "plain", ["yes"], speakers, noise=False)
    listed = make_speech_commands(tmp_path / "listed", ["yes"], speakers, noise=False,
                                  lists={"validation": speakers[:5], "testing": speakers[5:9]})

    def speakers_of(paths):
        return {speaker_id(Path(p).name) for p in paths}

    assert speakers_of(find_clips(str(plain))[0]) == set(speakers)  # a folder of training clips
    assert speakers_of(find_clips(str(listed))[0]) == set(speakers[9:])  # its lists decide
    (tmp_path / "config.json").write_text(json.dumps(
        {"validation_percentage": 20, "testing_percentage": 20, "split_salt": "s"}))
    split = config_split(tmp_path / "model.keras")  # the checkpoint's own data: its hash
    assert split == (20, 20, "s")
    assert speakers_of(find_clips(str(plain), split)[0]) == {
        s for s in speakers if which_set(f"{s}_nohash_0.wav", 20, 20, "s") == "training"}
    with pytest.raises(UserError, match="no clip on the training side"):
        find_clips(str(plain), (50, 50, ""))


def freeze_all_words_model(tmp_path, *flags):
    """An untrained ds_cnn_s over the 12 labels and two more words, frozen to f.tflite."""

    labels = COMPETITION_LABELS + ["bed", "bird"]
    net = build_model("ds_cnn_s", len(labels))
    net.save(tmp_path / "model.keras")
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    assert freeze_graph.main(["--checkpoint", str(tmp_path / "model.keras"),
                              "--frozen_path", str(tmp_path / "out" / "f.pb"),
                              "--formats", "tflite", "--num_check", "3", *flags]) == 0
    return net, labels


def test_competition_labels_fold_extra_words_into_unknown(exported, tmp_path):
    net, _ = freeze_all_words_model(tmp_path, "--competition_labels")
    assert (tmp_path / "out" / "f_labels.txt").read_text().split() == COMPETITION_LABELS
    probs = TFLiteModel(str(tmp_path / "out" / "f.tflite")).predict(exported["clips"][20])
    full = keras_probs(net, exported["clips"][20:21])[0]
    np.testing.assert_allclose(probs[2:], full[2:12], atol=1e-5)
    np.testing.assert_allclose(probs[1], full[1] + full[12] + full[13], atol=1e-5)


def test_label_folding_matrix():
    matrix, out = label_folding(["_silence_", "_unknown_", "yes", "cat", "no"], True)
    assert out == ["_silence_", "_unknown_", "yes", "no"]
    np.testing.assert_array_equal(matrix.argmax(axis=1), [0, 1, 2, 1, 3])
    assert label_folding(["a", "b"], False) == (None, ["a", "b"])
    with pytest.raises(UserError, match="_unknown_"):
        label_folding(["_silence_", "yes"], True)


# ---- make_submission_on_rpi ----------------------------------------------------------------
def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("name", ["frozen.pb", "frozen_int8.tflite"])
def test_rpi_submission_for_a_labelled_folder(exported, tmp_path, capsys, name):
    data = exported["data"]
    (tmp_path / "test").mkdir()
    bad = data / "yes" / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    try:
        out = tmp_path / "sub.csv"
        code = rpi.main(["--frozen_graph", str(exported["out"] / name), "--test_data", str(data),
                         "--submission_fn", str(out)])
    finally:
        bad.unlink()
    assert code == 0
    rows = read_csv(out)
    assert rows[0] == ["fname", "label"]
    assert len(rows) == 1 + 12 * CLIPS_PER_LABEL + 1
    kaggle = {"silence", "unknown"} | set(COMPETITION_LABELS[2:])
    assert {r[1] for r in rows[1:]} <= kaggle
    by_name = dict(rows[1:])
    assert by_name["yes/broken.wav"] == "silence"
    correct = np.mean([submission_label(COMPETITION_LABELS[k]) ==
                       by_name[f"{COMPETITION_LABELS[k]}/spk{i}_nohash_0.wav"]
                       for k in range(12) for i in range(CLIPS_PER_LABEL)])
    assert correct > 0.5
    captured = capsys.readouterr()
    assert "latency per clip: median" in captured.out and "accuracy" in captured.out
    assert "1 unreadable clips labelled silence" in captured.err


def test_rpi_flat_folder_uses_file_names(exported, tmp_path):
    flat = tmp_path / "audio"
    for i in range(3):
        write_wav(flat / f"clip_{i}.wav", exported["clips"][i * 12])
    out = tmp_path / "sub.csv"
    assert rpi.main(["--frozen_graph", str(exported["out"] / "frozen.tflite"),
                     "--test_data", str(flat), "--submission_fn", str(out)]) == 0
    assert [r[0] for r in read_csv(out)[1:]] == ["clip_0.wav", "clip_1.wav", "clip_2.wav"]


def test_rpi_refuses_garbage_models(exported, tmp_path):
    rng = np.random.RandomState(1)
    for ext in (".tflite", ".pb"):
        garbage = tmp_path / f"garbage{ext}"
        garbage.write_bytes(rng.bytes(4096))
        (tmp_path / "garbage_labels.txt").write_text("\n".join(COMPETITION_LABELS))
        with pytest.raises(UserError, match="not a"):
            load_model(str(garbage))
    (tmp_path / "model.tflite").write_bytes((exported["out"] / "frozen.tflite").read_bytes())
    with pytest.raises(UserError, match="no labels file"):
        load_model(str(tmp_path / "model.tflite"))
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match="12 outputs but its labels file has 2"):
        load_model(str(tmp_path / "model.tflite"), labels_path=str(tmp_path / "two.txt"))


def test_rpi_cli_is_light_and_fails_in_one_line(exported, tmp_path):
    """A .tflite run on 16 kHz clips imports neither TensorFlow nor scipy/pandas/librosa (only
    the soundfile reader that training uses too); a garbage model is one error line and exit
    code 2."""
    script = ("import sys, make_submission_on_rpi as m\n"
              "code = m.main(sys.argv[1:])\n"
              "heavy = [x for x in ('tensorflow', 'scipy', 'pandas', 'librosa', 'keras') "
              "if x in sys.modules]\n"
              "print('HEAVY', heavy)\n")
    ok = subprocess.run([sys.executable, "-c", script, "--frozen_graph",
                         str(exported["out"] / "frozen_int8.tflite"), "--test_data",
                         str(exported["data"]), "--submission_fn", str(tmp_path / "s.csv")],
                        cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "HEAVY []" in ok.stdout
    garbage = tmp_path / "g.tflite"
    garbage.write_bytes(b"\x00" * 100)
    bad = subprocess.run([sys.executable, "make_submission_on_rpi.py", "--frozen_graph",
                          str(garbage), "--test_data", str(exported["data"])],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("error: ")


# ---- the Pi's WAV reader ---------------------------------------------------------------------
@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("rate", [16000, 8000, 44100])
def test_the_pi_reads_the_samples_training_reads(tmp_path, subtype, channels, rate):
    """One reader: the Pi script labels exactly what the training cache and make_submission.py
    decode (read_many), whatever the encoding, channel count and rate."""
    from kws.audio import read_many

    x = np.random.RandomState(2).uniform(-0.9, 0.9, (int(0.75 * rate), channels))
    path = tmp_path / "x.wav"
    sf.write(path, x, rate, subtype=subtype)
    ours = read_wav(str(path))
    assert ours.dtype == np.float32 and ours.shape == (16000,)
    np.testing.assert_array_equal(ours, read_many([str(path)])[0][0])
    assert np.all(ours[12100:] == 0)


def test_wav_reader_errors_name_the_file(tmp_path):
    from kws.audio import AudioError

    good = tmp_path / "good.wav"
    write_wav(good, np.zeros(1600))
    data = good.read_bytes()
    cases = {"empty.wav": b"", "text.wav": b"hello world, not a wav file",
             "truncated.wav": data[:200], "nodata.wav": data[:36]}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(AudioError, match=name):
            read_wav(str(tmp_path / name))
    with pytest.raises(AudioError, match="missing.wav"):
        read_wav(str(tmp_path / "missing.wav"))


def test_wav_data_mixes_channels_and_refuses_other_rates(exported, tmp_path):
    """A stereo and an 8 kHz file through both inputs of the frozen graph: wav_data mixes the
    channels like every other reader and refuses the wrong rate with a clear error; the Pi
    script's way (the project's reader into decoded_sample_data) takes both."""
    import tensorflow as tf

    clip = exported["clips"][40]
    stereo = np.stack([clip, 0.5 * exported["clips"][60]], axis=1)
    sf.write(tmp_path / "stereo.wav", stereo, 16000, subtype="PCM_16")
    sf.write(tmp_path / "8k.wav", clip[::2], 8000, subtype="PCM_16")
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((exported["out"] / "frozen.pb").read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    pb = load_model(str(exported["out"] / "frozen.pb"))[0]
    want = keras_probs(exported["keras"], read_wav(tmp_path / "stereo.wav")[None])[0]
    with tf.compat.v1.Session(graph=graph) as sess:
        got = sess.run("labels_softmax:0", {"wav_data:0": (tmp_path / "stereo.wav").read_bytes()})
        np.testing.assert_allclose(got[0], want, atol=1e-4)
        np.testing.assert_allclose(pb.predict(read_wav(tmp_path / "stereo.wav")), want,
                                   atol=1e-4)
        with pytest.raises(tf.errors.InvalidArgumentError, match="16000 Hz 16-bit PCM WAV only"):
            sess.run("labels_softmax:0", {"wav_data:0": (tmp_path / "8k.wav").read_bytes()})
    samples = read_wav(tmp_path / "8k.wav")  # resampled to 16 kHz by the project's reader
    np.testing.assert_allclose(pb.predict(samples),
                               keras_probs(exported["keras"], samples[None])[0], atol=1e-4)


def test_rpi_folds_an_all_words_model_into_the_12_classes(exported, tmp_path, capsys):
    """Frozen without --competition_labels, a model of extra words still writes Kaggle labels
    and is scored in the 12 classes, as make_submission.py does."""
    net, labels = freeze_all_words_model(tmp_path)
    out = tmp_path / "sub.csv"
    assert rpi.main(["--model", str(tmp_path / "out" / "f.tflite"), "--test_data",
                     str(exported["data"]), "--submission_fn", str(out)]) == 0
    rows = read_csv(out)[1:]
    kaggle = {"silence", "unknown"} | set(COMPETITION_LABELS[2:])
    assert rows and {label for _, label in rows} <= kaggle
    probs = keras_probs(net, exported["clips"])
    from kws.labels import submission_labels
    want = submission_labels(probs, labels)
    by_name = dict(rows)
    got = [by_name[f"{COMPETITION_LABELS[k]}/spk{i}_nohash_0.wav"]
           for k in range(12) for i in range(CLIPS_PER_LABEL)]
    assert np.mean([a == b for a, b in zip(got, want)]) > 0.95  # float .tflite vs Keras
    assert "accuracy" in capsys.readouterr().out
