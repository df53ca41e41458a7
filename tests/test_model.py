"""Tests for model.py: shapes, sizes, front ends, checkpoints, MAC counting and TFLite export."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import model
from kws.checkpoint import load_checkpoint, model_stats
from kws.common import UserError
from kws.export import tflite_bytes, tflite_ops
from kws.layers import MFCC, FrequencyWarp, LogMel, SpecAugment, TimeSlices
from kws.zoo import EDGE_MODEL, MODELS, build_model
from kws.zoo.blocks import depthwise_freq_strided

REPO = Path(__file__).resolve().parents[1]
CLIPS = np.random.default_rng(0).normal(0, 0.1, (4, 16000)).astype(np.float32)


def settle(m, x=CLIPS, steps=3):
    """A few training-mode calls so the batch-norm statistics (and the outputs) are not trivial."""
    for _ in range(steps):
        m(x, training=True)
    return m


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_builds_for_batch_1_and_4(name):
    classes = 32 if name == "seed106" else 12
    m = build_model(name, classes)
    assert m.name == name
    assert m.input_shape == (None, 16000)
    assert m.inputs[0].name == "audio"
    assert tuple(m(CLIPS[:1], training=False).shape) == (1, classes)
    out = m(CLIPS, training=False)
    assert tuple(out.shape) == (4, classes)
    assert np.all(np.isfinite(out))


def test_seed195_size_matches_the_winner():
    m = build_model("seed195", 12)
    trainable = sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    assert trainable == 1_191_433  # ~1.19 M as the write-up; 9 time steps at the attention head
    assert m.get_layer("attention").units == 9
    stats = model_stats(m)
    assert stats["float_bytes"] < 5_000_000
    assert 50e6 < stats["macs"] < 60e6


def test_seed106_shape_and_size():
    m = build_model("seed106", 32)
    assert m.output_shape == (None, 32)
    assert m.get_layer("conv0").filters == 64
    assert not m.get_layer("attention").use_bias
    assert m.get_layer("stage5_context_pw").filters == 448
    assert model_stats(m)["params"] == 1_106_752


def test_edge_model_is_small_and_cheap():
    seed = model_stats(build_model("seed195", 12))
    edge = model_stats(build_model(EDGE_MODEL, 12))
    assert 50_000 <= edge["params"] <= 250_000
    assert edge["float_bytes"] < seed["float_bytes"] / 4
    assert edge["macs"] * 5 < seed["macs"]


def test_unknown_model_and_bad_options_raise():
    with pytest.raises(UserError, match="unknown model"):
        build_model("nope", 12)
    with pytest.raises(UserError, match="bad option"):
        build_model("seed195", 12, no_such_option=1)
    with pytest.raises(UserError):
        build_model("seed195", 1)


def test_log_mel_equals_numpy_fft():
    for kwargs in [{}, {"hop_ms": 20.0}, {"window_ms": 40.0, "power": 1.0, "upper_hz": 4000.0}]:
        layer = LogMel(**kwargs)
        layer.build(None)
        got = layer.mel_spectrum(CLIPS).numpy()
        n, hop = layer.window, layer.hop
        frames = np.lib.stride_tricks.sliding_window_view(CLIPS, n, axis=1)[:, ::hop]
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
        spectrum = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** layer.power
        import tensorflow as tf

        mel = tf.signal.linear_to_mel_weight_matrix(40, n // 2 + 1, 16000, layer.lower_hz,
                                                    layer.upper_hz).numpy()
        want = spectrum @ mel
        assert got.shape == (4, layer.num_frames(), 40)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max())


def test_front_end_shapes():
    assert LogMel().compute_output_shape((None, 16000)) == (None, 98, 40)
    assert LogMel(hop_ms=20).compute_output_shape((None, 16000)) == (None, 49, 40)
    mfcc = MFCC(num_coefficients=10, window_ms=40, hop_ms=20)
    assert tuple(mfcc(CLIPS).shape) == (4, 49, 10)


def test_time_slices_use_same_padding():
    x = np.arange(16000, dtype=np.float32)[None]
    frames = TimeSlices(40, 20)(x).numpy()[0]
    assert frames.shape == (800, 40)
    np.testing.assert_array_equal(frames[0], np.r_[np.zeros(10), np.arange(30)])
    np.testing.assert_array_equal(frames[5], np.arange(90, 130))
    np.testing.assert_array_equal(frames[-1], np.r_[np.arange(15970, 16000), np.zeros(10)])


def test_spec_augment_masks_only_in_training():
    layer = SpecAugment(time_masks=2, time_width=10, freq_masks=2, freq_width=5, seed=1)
    x = np.ones((8, 49, 40), dtype=np.float32)
    np.testing.assert_array_equal(layer(x, training=False), x)
    masked = layer(x, training=True).numpy()
    assert masked.shape == x.shape
    zeros = masked == 0
    assert zeros.any()
    # each clip loses at most 2 x 10 frames and 2 x 5 bands, whole rows/columns at a time
    for clip in zeros:
        dead_frames = clip.all(axis=1).sum()
        dead_bands = clip.all(axis=0).sum()
        assert dead_frames <= 20 and dead_bands <= 10
        assert clip.sum() == dead_frames * 40 + dead_bands * 49 - dead_frames * dead_bands


def test_frequency_warp_moves_formants_by_its_factor_and_only_in_training():
    layer = FrequencyWarp(max_warp=0.1, lower_hz=0.0, upper_hz=4000.0, seed=1)
    peak = np.zeros((1, 98, 40), np.float32)
    peak[..., 20] = 1.0
    np.testing.assert_array_equal(layer(peak, training=False), peak)
    np.testing.assert_allclose(layer.warp(peak, np.ones((1, 1), np.float32)), peak, atol=1e-5)
    centre_hz = layer._centre_hz
    for factor in (0.9, 1.1):  # the peak's frequency (weighted by its spread) moves by factor
        warped = layer.warp(peak, np.full((1, 1), factor, np.float32)).numpy()[0, 0]
        moved_hz = (warped * centre_hz).sum() / warped.sum()
        assert moved_hz == pytest.approx(centre_hz[20] * factor, rel=0.02)
    x = np.random.default_rng(0).normal(size=(8, 98, 40)).astype(np.float32)
    trained = layer(x, training=True).numpy()
    assert trained.shape == x.shape and not np.allclose(trained, x)
    assert trained.min() >= x.min() and trained.max() <= x.max()  # between bands, no new values


def test_a_warped_model_builds_saves_and_is_plain_at_inference(tmp_path):
    labels = [f"w{i}" for i in range(12)]
    options = {"features": "pack", "spec_augment": {"freq_warp": 0.1}, "width": 1.0}
    m = settle(build_model("edge_tcs", 12, **options))
    assert "freq_warp" in [layer.name for layer in m.layers]
    before = m.predict(CLIPS, verbose=0)
    loaded, _ = load_checkpoint(_save(m, tmp_path / "warp", labels))
    np.testing.assert_array_equal(loaded.predict(CLIPS, verbose=0), before)
    assert loaded.get_layer("freq_warp").max_warp == 0.1
    with pytest.raises(UserError, match="freq_warp stretches mel bands"):
        build_model("ds_cnn_s", 12, features="mfcc", spec_augment={"freq_warp": 0.1})


def test_model_stats_counts_by_hand():
    audio = keras.Input((16000,), name="audio")
    x = keras.layers.Reshape((100, 160))(audio)
    x = keras.layers.Conv1D(8, 3, strides=2, padding="valid", use_bias=False)(x)  # 49 steps
    x = keras.layers.DepthwiseConv1D(3, padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5)(x)
    m = keras.Model(audio, x)
    want = 49 * 3 * 160 * 8 + 49 * 3 * 8 + 49 * 8 * 5
    stats = model_stats(m)
    assert stats["macs"] == want
    assert stats["params"] == 3 * 160 * 8 + (3 * 8 + 8) + (49 * 8 * 5 + 5)
    assert stats["float_bytes"] == 4 * stats["params"]


def _save(m, folder, labels):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ep-001-vl-0.5000.keras"
    m.save(path)
    (folder / "labels.txt").write_text("".join(label + "\n" for label in labels))
    return path


@pytest.mark.parametrize("name,options", [("seed195", {}), ("edge_tcs", {"spec_augment": True}),
                                          ("edge_bcres", {}), ("ds_cnn_s", {})])
def test_checkpoint_round_trip_is_exact(tmp_path, name, options):
    labels = [f"w{i}" for i in range(12)]
    m = settle(build_model(name, 12, **options))
    before = m.predict(CLIPS, verbose=0)
    path = _save(m, tmp_path / name, labels)
    loaded, got_labels = load_checkpoint(path)
    assert got_labels == labels
    np.testing.assert_array_equal(loaded.predict(CLIPS, verbose=0), before)
    assert np.abs(before).max() > 1e-3  # the settled model computes something non-trivial


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.keras")
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "ep.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="labels.txt not found"):
        load_checkpoint(bogus / "ep.keras")
    (bogus / "labels.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match="not a loadable Keras archive"):
        load_checkpoint(bogus / "ep.keras")
    path = _save(build_model("ds_cnn_s", 3), tmp_path / "three", ["a", "b", "c"])
    (path.parent / "labels.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match="2 labels but the model has 3 outputs"):
        load_checkpoint(path)


def test_edge_model_tflite_float_and_int8_agree_with_keras():
    from ai_edge_litert.interpreter import Interpreter

    m = settle(build_model(EDGE_MODEL, 12))
    want = m.predict(CLIPS, verbose=0)
    seed_bytes = model_stats(build_model("seed195", 12))["float_bytes"]
    for quantize in (None, "int8"):
        flatbuffer = tflite_bytes(m, quantize, representative=CLIPS)
        ops = tflite_ops(flatbuffer)
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
        interpreter = Interpreter(model_content=flatbuffer)
        interpreter.allocate_tensors()
        got = []
        for clip in CLIPS:
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], clip[None])
            interpreter.invoke()
            got.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
        got = np.array(got)
        scale = np.abs(want).max()
        if quantize is None:
            np.testing.assert_allclose(got, want, atol=1e-4 * scale)
        else:
            assert len(flatbuffer) < seed_bytes / 4
            assert ops["LOG"] == {"float32"}  # the front end stays float ...
            assert ops["CONV_2D"] == {"int8"}  # ... the network runs in int8
            assert np.abs(got - want).max() < 0.2 * scale


def test_int8_needs_representative_clips():
    with pytest.raises(UserError, match="representative"):
        tflite_bytes(build_model("ds_cnn_s", 12), "int8", representative=[])


def test_cli_prints_stats_and_rejects_unknown_model(capsys):
    assert model.main(["--model", "ds_cnn_s", "--quiet", "--option", "dropout=0.1"]) == 0
    assert "model ds_cnn_s: params 24," in capsys.readouterr().out
    with pytest.raises(UserError, match="unknown model"):
        model.main(["--model", "nope"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        model.main(["--model", "ds_cnn_s", "--option", "width"])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "model.py", "--model", "nope"], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: unknown model 'nope'")


@pytest.mark.parametrize("size,stride", [(20, 2), (10, 2), (5, 2), (7, 2), (9, 3)])
def test_frequency_strided_depthwise_equals_the_strided_conv(size, stride):
    """Stride-1 depthwise + slice gives what DepthwiseConv2D(strides=(1, s), 'same') gives,
    computed here channel by channel with Conv2D, whose kernel takes unequal strides anywhere."""
    import tensorflow as tf

    x = np.random.default_rng(size).normal(size=(2, 6, size, 3)).astype(np.float32)
    inputs = keras.Input(x.shape[1:])
    m = keras.Model(inputs, depthwise_freq_strided(inputs, 3, stride, "dw"))
    kernel = m.get_layer("dw").get_weights()[0]  # [1, 3, channels, 1]
    want = tf.concat([tf.nn.conv2d(x[..., c:c + 1], kernel[:, :, c:c + 1, :], (1, 1, stride, 1),
                                   "SAME") for c in range(3)], axis=-1)
    got = m(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_trains_saves_and_converts(tmp_path, name):
    """One training step, a .keras round trip and a float .tflite: what train.py and
    freeze_graph.py need, on this CPU (CI runs this file with oneDNN on and off)."""
    from ai_edge_litert.interpreter import Interpreter

    m = build_model(name, 12)
    m.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = m.train_on_batch(CLIPS, np.arange(4))
    assert np.isfinite(loss)
    path = _save(m, tmp_path / name, [f"w{i}" for i in range(12)])
    loaded, _ = load_checkpoint(path)
    want = loaded.predict(CLIPS[:1], verbose=0)
    np.testing.assert_array_equal(want, m.predict(CLIPS[:1], verbose=0))
    interpreter = Interpreter(model_content=tflite_bytes(loaded))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], CLIPS[:1])
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, want, atol=1e-3 * max(np.abs(want).max(), 1))
