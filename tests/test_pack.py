"""The spectrogram pack: reading it in place, pairing it with audio, the PackFeatures front end,
and fitting that front end (fit_frontend.py), on a small pack generated here; plus the real
pack's match where ../shared/data has it."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, tone

from kws.audio import write_wav
from kws.checkpoint import load_checkpoint
from kws.common import UserError
from kws.folders import real_split
from kws.frontend import FrontEnd
from kws.layers import PackFeatures, front_end_layer, pack_trainer
from kws.pack import (
    GREY_OFFSET,
    GREY_SCALE,
    cache_name,
    grey_to_features,
    paired_clips,
    parse_name,
    read_pack,
)
from kws.pack_data import pack_dataset
from kws.zoo import build_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
WORDS = ["yes", "no", "up"]


def speakers_in(split, count):
    """Speaker ids that make real's split puts in `split`."""
    found, i = [], 0
    while len(found) < count:
        speaker = f"{i:08x}"
        if real_split(f"{speaker}_nohash_0.wav") == split:
            found.append(speaker)
        i += 1
    return found


def jpeg(grey):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(grey, 0, 255)).astype(np.uint8)).save(buffer, "JPEG",
                                                                           quality=75)
    return buffer.getvalue()


def grey_of(clip, scale=GREY_SCALE, offset=GREY_OFFSET):
    layer = PackFeatures(grey_scale=scale, grey_offset=offset)
    layer.build((1, 16000))
    return FrontEnd(layer.stream_constants()).window_features(clip) * 64 + 128


@pytest.fixture(scope="module")
def small_pack(tmp_path_factory):
    """A pack of tone 'words' made by PackFeatures with known constants (scale 9.0, offset
    140), its dev folder of the same clips as audio, and a speaker with no audio."""
    root = tmp_path_factory.mktemp("pack")
    dev = root / "dev"
    speakers = speakers_in("training", 3) + speakers_in("testing", 2)
    members = {}
    for s, speaker in enumerate(speakers):
        for w, word in enumerate(WORDS + ["cat"]):
            clip = tone(300 + 150 * w + 7 * s, seed=s) * (0.5 + 0.2 * s)
            folder = "unknown" if word == "cat" else word
            members[f"{folder}/{speaker}_nohash_0.{word}.jpg"] = jpeg(grey_of(clip, 9.0, 140.0))
            if word == "cat":
                write_wav(dev / "_unknown_" / f"cat_{speaker}_nohash_0.wav.wav", clip)
            else:
                write_wav(dev / word / f"{speaker}_nohash_0.wav", clip)
    members["yes/ffffffff_nohash_0.yes.jpg"] = jpeg(grey_of(tone(500), 9.0, 140.0))  # no audio
    members["_background_noise_/1_background.jpg"] = jpeg(np.full((98, 40), 20.0))
    members["README.txt"] = b"not an image"
    path = root / "pack.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return {"zip": path, "dev": dev, "speakers": speakers, "root": root}


def test_names_parse_to_label_speaker_word_and_take():
    e = parse_name("unknown/0a7c2a8d_nohash_3.marvin.jpg")
    assert (e.label, e.word, e.speaker, e.take) == ("_unknown_", "marvin", "0a7c2a8d", "3")
    assert parse_name("yes/0a7c2a8d_nohash_0.yes.jpg").label == "yes"
    assert parse_name("_background_noise_/5_background.jpg").label == "_silence_"
    for bad in ("README.md", "yes/x.jpg", "yes/0a_nohash_0.no.jpg", "cat/0a_nohash_0.cat.jpg",
                "a/b/c.jpg", "yes/._0a_nohash_0.yes.jpg"):
        assert parse_name(bad) is None, bad


def test_the_pack_is_read_in_place_cached_and_paired(small_pack, tmp_path):
    pack = read_pack(str(small_pack["zip"]), str(tmp_path))
    assert pack.images.shape == (5 * 4 + 2, 98, 40) and pack.images.dtype == np.uint8
    assert sorted(set(pack.labels)) == ["_silence_", "_unknown_", "no", "up", "yes"]
    assert (tmp_path / cache_name(str(small_pack["zip"]))).is_file()
    again = read_pack(str(small_pack["zip"]), str(tmp_path))
    assert np.array_equal(again.images, pack.images) and again.labels == pack.labels
    pairs = paired_clips(pack, str(small_pack["dev"]))
    assert len(pairs) == 5 * 4  # every take with audio, unknown words included; not the others
    assert all(Path(p).is_file() for _, p in pairs)
    assert pack.select(lambda e: e.speaker == small_pack["speakers"][0]).images.shape[0] == 4


def test_bad_packs_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_pack(str(tmp_path / "missing.zip"))
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(UserError, match="not a zip"):
        read_pack(str(tmp_path / "text.zip"))
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("README.txt", "hi")
    with pytest.raises(UserError, match="no spectrogram images"):
        read_pack(str(tmp_path / "empty.zip"))
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as z:
        z.writestr("yes/0a_nohash_0.yes.jpg", b"\xff\xd8 broken")
    with pytest.raises(UserError, match="not a readable image"):
        read_pack(str(tmp_path / "bad.zip"))
    with zipfile.ZipFile(tmp_path / "size.zip", "w") as z:
        z.writestr("yes/0a_nohash_0.yes.jpg", jpeg(np.zeros((40, 98))))
    with pytest.raises(UserError, match="98 x 40"):
        read_pack(str(tmp_path / "size.zip"))


def test_pack_features_layer_equals_the_streaming_front_end_and_the_pack_images():
    clip = tone(440, seed=3)
    layer = PackFeatures()
    keras_features = layer(clip[None]).numpy()[0]
    assert keras_features.shape == (98, 40)
    numpy_features = FrontEnd(layer.stream_constants()).window_features(clip)
    np.testing.assert_allclose(keras_features, numpy_features, atol=1e-4)
    image = np.frombuffer(jpeg(keras_features * 64 + 128), np.uint8)
    from PIL import Image

    decoded = np.asarray(Image.open(io.BytesIO(image.tobytes())))
    # the same feature from the image, within the JPEG's own noise
    assert np.sqrt(((grey_to_features(decoded) - keras_features) ** 2).mean()) * 64 < 6


def test_a_pack_model_trains_freezes_and_streams(tmp_path):
    import keras

    import freeze_graph

    net = build_model("edge_tcs", 3, features="pack", width=0.25, head_channels=16)
    net.compile(optimizer="adam",
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.stack([tone(300 + 200 * (i % 3), seed=i) for i in range(12)])
    net.fit(x, np.arange(12) % 3, epochs=1, verbose=0)
    folder = tmp_path / "ck"
    folder.mkdir()
    net.save(folder / "last.keras")
    (folder / "labels.txt").write_text("_silence_\n_unknown_\nyes\n")
    out = tmp_path / "tf"
    assert freeze_graph.main(["--checkpoint", str(folder / "last.keras"), "--frozen_path",
                              str(out / "m.pb"), "--formats", "tflite,stream",
                              "--num_check", "4"]) == 0
    assert (out / "m_stream.npz").is_file() and (out / "m_stream_body.tflite").is_file()
    info = json.loads((out / "m_info.json").read_text())
    assert info["checks"]["stream"]["top1_agreement"] == 1.0


def test_fit_frontend_recovers_the_constants_the_pack_was_made_with(small_pack, tmp_path):
    out = tmp_path / "fit.json"
    done = subprocess.run([sys.executable, str(REPO / "fit_frontend.py"), "--pack",
                           str(small_pack["zip"]), "--dev_dir", str(small_pack["dev"]),
                           "--cache_dir", str(tmp_path), "--json", str(out),
                           "--log_offsets", "1e-6"], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(out.read_text())
    # JPEG smooths the images a little, which flattens the line by a few per cent
    assert record["fitted"]["grey_scale"] == pytest.approx(9.0, rel=0.03)
    assert record["fitted"]["grey_offset"] == pytest.approx(140.0, abs=1.5)
    assert set(record["sets"]) == {"training", "testing"}
    testing = record["sets"]["testing"]
    assert testing["speakers"] == 2 and testing["fitted"]["clips"] == 8
    assert testing["fitted"]["correlation"] > 0.98
    assert testing["fitted"]["rms"] < 2 * testing["jpeg_noise_floor_rms"] + 1


def test_fit_frontend_bad_input(tmp_path, small_pack):
    for args, fragment in [(["--dev_dir", str(tmp_path / "nope")], "not found"),
                           (["--log_offsets", "0"], "log offsets"),
                           (["--pack", str(tmp_path / "x.zip"), "--dev_dir",
                             str(small_pack["dev"])], "not found"),
                           (["--pack", str(small_pack["zip"]), "--dev_dir", str(tmp_path),
                             "--cache_dir", str(tmp_path)], "no image")]:
        done = subprocess.run([sys.executable, str(REPO / "fit_frontend.py"), *args], cwd=REPO,
                              env=ENV, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert fragment in done.stderr.strip().splitlines()[-1], (args, done.stderr[-500:])


def test_the_real_pack_matches_the_front_end_on_unseen_speakers(tmp_path):
    pack_path = SHARED_DATA / "speech_commands_v0.02_spectrograms.zip"
    dev = SHARED_DATA / "speech_commands_test_v0.02_dev"
    if not pack_path.is_file() or not dev.is_dir():
        pytest.skip(f"the spectrogram pack is not present at {SHARED_DATA}")
    pack = read_pack(str(pack_path), str(REPO / "data" / "pack"))
    assert pack.images.shape == (50352, 98, 40)
    pairs = [(i, p) for i, p in paired_clips(pack, str(dev))
             if real_split(os.path.basename(p)) == "testing"][:120]
    from kws.audio import read_many

    clips, kept = read_many([p for _, p in pairs])
    ours = PackFeatures()(clips).numpy() * 64 + 128
    grey = pack.images[[pairs[k][0] for k in kept]].astype(np.float64)
    per_clip = np.sqrt(((ours - grey) ** 2).mean(axis=(1, 2)))
    assert np.median(per_clip) < 6  # the JPEG noise floor is about 4.3 grey levels
    assert np.corrcoef(ours.ravel(), grey.ravel())[0, 1] > 0.95


def test_train_mixes_the_pack_with_audio_and_saves_the_whole_model(small_pack, tmp_path):
    from conftest import make_speech_commands

    # audio of the pack's speakers: whichever land in the audio's testing set lose their images
    data = make_speech_commands(tmp_path / "sc", WORDS + ["cat"], small_pack["speakers"] +
                                [f"{i:08x}" for i in range(10, 20)])
    # and a folder training never reads (a stream's clips) names the speaker without audio
    streams = make_speech_commands(tmp_path / "streams", ["yes"], ["ffffffff"], noise=False)
    run = [sys.executable, str(REPO / "train.py"), "--config",
           str(REPO / "experiments" / "smoke.json"), "--data_dir", str(data),
           "--checkpoint_dir", str(tmp_path / "ck"), "--log_dir", str(tmp_path / "logs"),
           "--model", "edge_tcs", "--model_options",
           '{"features": "pack", "width": 0.25, "head_channels": 16}',
           "--pack", str(small_pack["zip"]), "--pack_cache_dir", str(tmp_path / "cache"),
           "--pack_held_out_dir", str(streams)]
    done = subprocess.run(run, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    from kws.folders import which_set

    held = {sp for sp in small_pack["speakers"] if which_set(f"{sp}_nohash_0.wav", 10, 10) !=
            "training"}  # train.py's default split of the audio
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("pack: "))
    # 4 images (yes, no, up, cat) of each pack speaker not held out; not the one without audio
    assert int(line.split()[1]) == 4 * (5 - len(held)), (line, held)
    audio_held = {sp for sp in small_pack["speakers"] + [f"{i:08x}" for i in range(10, 20)]
                  if which_set(f"{sp}_nohash_0.wav", 10, 10) != "training"}
    assert f"({len(audio_held) + 1} held-out speakers left out)" in line, line
    assert "6 steps per epoch" in done.stdout  # 3 audio steps at --pack_frequency 0.5
    net, labels = load_checkpoint(tmp_path / "ck" / "smoke" / "last.keras")
    assert net.input_shape == (None, 16000) and len(labels) == 12
    resumed = subprocess.run(run + ["--resume", "--epochs", "3"], cwd=REPO, env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "ck" / "smoke" / "state.json").read_text())["epoch"] == 3


def test_pack_batches_are_shifted_offset_and_noisy_images_augmented_whole():
    from kws.pack import GREY_CENTRE, GREY_SPREAD

    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, (5, 98, 40)).astype(np.uint8)
    labels = np.arange(5, dtype=np.int32)
    plain = pack_dataset(images, labels, 8, seed=3, gain_db=0.0)
    batches = [(x.numpy() * GREY_SPREAD + GREY_CENTRE, y.numpy()) for x, y in plain.take(3)]
    shifts = set()
    for grey, y in batches:
        assert grey.shape == (8, 98, 40) and y.dtype == np.int32
        for g, label in zip(grey, y):
            image = images[label].astype(np.float32)
            floor = image.min(axis=0)
            match = [s for s in range(-10, 11) if np.allclose(
                g, np.where((np.arange(98) - s >= 0)[:, None] & (np.arange(98) - s < 98)[:, None],
                            image[np.clip(np.arange(98) - s, 0, 97)], floor), atol=1e-3)]
            assert match, "every image is its own, shifted by at most 10 frames"
            shifts.add(match[0])
    assert len(shifts) > 5
    again = [x.numpy() for x, _ in pack_dataset(images, labels, 8, seed=3, gain_db=0.0).take(3)]
    np.testing.assert_array_equal(again[2], (batches[2][0] - GREY_CENTRE) / GREY_SPREAD)
    # gain: one offset per image, within +-6 dB; soft-target labels as the audio batches have
    gained = pack_dataset(images, labels, 64, seed=3, shift_frames=0, num_classes=12)
    x, y = next(iter(gained))
    offsets = (x.numpy() * GREY_SPREAD + GREY_CENTRE) - images[y.numpy()[:, 0].astype(int)]
    spread = offsets.max(axis=(1, 2)) - offsets.min(axis=(1, 2))
    unclipped = spread < 1e-3
    assert unclipped.mean() > 0.5 and np.abs(offsets.mean(axis=(1, 2))).max() <= 2 * GREY_SCALE \
        * np.log(10 ** (6 / 20)) + 1e-3 and offsets[unclipped].std() > 1
    assert y.shape == (64, 13) and np.all(y.numpy()[:, 1:] == -1)
    # noise images raise the quiet cells of about half the images
    noise = np.full((2, 98, 40), 200.0, np.float32)
    noisy = pack_dataset(images, labels, 64, seed=3, shift_frames=0, gain_db=0.0, noise=noise)
    x, y = next(iter(noisy))
    raised = (x.numpy() * GREY_SPREAD + GREY_CENTRE - images[y.numpy()]).mean(axis=(1, 2)) > 1
    assert 0.2 < raised.mean() < 0.8


def test_pack_needs_a_pack_model(small_pack, tmp_path):
    from conftest import make_speech_commands

    data = make_speech_commands(tmp_path / "sc", WORDS, [f"{i:08x}" for i in range(6)])
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "--config",
                           str(REPO / "experiments" / "smoke.json"), "--data_dir", str(data),
                           "--checkpoint_dir", str(tmp_path / "ck"), "--log_dir",
                           str(tmp_path / "logs"), "--pack", str(small_pack["zip"])],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--pack needs a model with the pack front end" in \
        done.stderr.strip().splitlines()[-1], done.stderr[-2000:]


def test_the_pack_trainer_runs_the_front_end_on_audio_batches_only():
    import keras

    net = build_model("edge_tcs", 12, features="pack", width=0.25, head_channels=16)
    trainer = pack_trainer(net)
    front = front_end_layer(net, PackFeatures)
    body = keras.Model(front.output, net.output)
    rng = np.random.default_rng(1)
    audio = rng.normal(0, 0.1, (3, 16000)).astype(np.float32)
    image = rng.normal(0, 1, (3, 98, 40)).astype(np.float32)
    on_audio = trainer([audio, np.zeros_like(image), np.ones(3, bool)], training=False)
    np.testing.assert_allclose(on_audio, net(audio, training=False), atol=1e-5)
    on_image = trainer([np.zeros_like(audio), image, np.zeros(3, bool)], training=False)
    np.testing.assert_allclose(on_image, body(image, training=False), atol=1e-5)
    assert trainer.trainable_weights and all(
        any(w is v for v in net.trainable_weights) for w in trainer.trainable_weights)
    with pytest.raises(UserError, match="pack front end"):
        pack_trainer(build_model("edge_tcs", 12, width=0.25, head_channels=16))


@pytest.mark.parametrize("name", ["tutorial_conv", "ds_cnn_s", "edge_bcres", "edge_tcs"])
def test_every_spectrogram_model_takes_the_pack_front_end(name):
    net = build_model(name, 12, features="pack")
    assert front_end_layer(net, PackFeatures).output.shape[1:] == (98, 40)
    assert net.predict(np.stack([tone(440), tone(880)]), verbose=0).shape == (2, 12)


def test_raw_waveform_models_cannot_take_the_pack():
    for name in ("seed195", "seed106"):
        with pytest.raises(UserError, match="bad option"):
            build_model(name, 12, features="pack")


def test_the_pipeline_benchmark_times_the_pack_input(small_pack, tmp_path):
    from conftest import make_speech_commands

    data = make_speech_commands(tmp_path / "sc", WORDS, [f"{i:08x}" for i in range(10, 20)])
    done = subprocess.run([sys.executable, str(REPO / "benchmark.py"), "--pipeline", str(data),
                           "--pipeline_steps", "2", "--pipeline_rounds", "2", "--pipeline_pack",
                           str(small_pack["zip"]), "--json", str(tmp_path / "pipeline.json")],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    pack = json.loads((tmp_path / "pipeline.json").read_text())["pack"]
    assert len(pack["input_wait_rounds"]) == len(pack["input_cost_rounds"]) == 2
    assert 0 <= pack["input_wait"] < 1 and pack["step_cached_ms"] > 0
    assert set(pack["branches_alone_ms"]) == {"audio clips", "pack images"}
    assert pack["images"] > 0 and pack["resident_mb"] > 0 and pack["pack_added_mb"] > 0


def test_a_pack_student_distils_from_a_pack_teacher(small_pack, tmp_path):
    """The entry's distillation with the pack: a teacher on the pack front end labels audio
    clips and pack images alike in the mixed batches; a teacher without it is a one-line
    error."""
    from conftest import make_speech_commands

    from kws.train.distill import pack_teacher, teacher_targets

    data = make_speech_commands(tmp_path / "sc", WORDS + ["cat"], small_pack["speakers"] +
                                [f"{i:08x}" for i in range(10, 20)])
    base = [sys.executable, str(REPO / "train.py"), "--config",
            str(REPO / "experiments" / "smoke.json"), "--data_dir", str(data),
            "--checkpoint_dir", str(tmp_path / "ck"), "--log_dir", str(tmp_path / "logs"),
            "--model", "edge_tcs", "--pack", str(small_pack["zip"]),
            "--pack_cache_dir", str(tmp_path / "cache")]
    options = ["--model_options", '{"features": "pack", "width": 0.25, "head_channels": 16}']
    teacher = subprocess.run(base + options + ["--exp_name", "teacher"], cwd=REPO, env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    checkpoint = str(tmp_path / "ck" / "teacher" / "last.keras")
    student = subprocess.run(base + options + ["--exp_name", "student", "--teacher_checkpoint",
                                               checkpoint], cwd=REPO, env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert student.returncode == 0, student.stderr[-3000:]
    assert (tmp_path / "ck" / "student" / "last.keras").is_file()
    # the mixed batches get the teacher's probabilities on both branches
    net, labels = load_checkpoint(checkpoint)
    pack_net = pack_teacher(net)
    audio = np.stack([tone(440), tone(660)]).astype(np.float32)
    images = np.zeros((2, 98, 40), np.float32)
    import tensorflow as tf

    batch = ((audio, images, np.array([True, False])), -np.ones((2, 1 + len(labels)), np.float32))
    (_, y), = teacher_targets(tf.data.Dataset.from_tensors(batch), [pack_net])
    np.testing.assert_allclose(y.numpy()[:, 1:].sum(axis=1), 1.0, rtol=1e-5)
    plain = build_model("edge_tcs", 12, width=0.25, head_channels=16)
    with pytest.raises(UserError, match="needs the pack front end"):
        pack_teacher(plain)


def test_pack_mixing_still_draws_audio_after_the_finite_audio_epochs_run_out():
    import tensorflow as tf

    from kws.pack_data import mix_batches
    audio = tf.data.Dataset.range(20)  # a run of epochs x steps: 20 audio batches in all
    pack = tf.data.Dataset.from_tensors(tf.constant(-1, tf.int64)).repeat()
    drawn = np.array(list(mix_batches(audio, pack, 0.5, seed=3).take(120).as_numpy_iterator()))
    assert 0.3 < (drawn[60:] >= 0).mean() < 0.7  # the tail is not pack images alone
    without_repeat = tf.data.Dataset.sample_from_datasets([audio, pack], [0.5, 0.5], seed=3)
    before = np.array(list(without_repeat.take(120).as_numpy_iterator()))
    ran_out = int(np.flatnonzero(before == 19)[0])  # the last audio batch, then only pack
    assert ran_out < 60
    assert (before[ran_out + 1:] == -1).all()
    np.testing.assert_array_equal(drawn[:ran_out + 1], before[:ran_out + 1])
