"""Streaming: the ring buffer, the recognizer (and the TF example's), cached front-end frames,
the measures, and the four streaming scripts end to end on a stream whose words are known."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kws.audio import read_wav, write_wav
from kws.common import UserError
from kws.stream_eval import (
    SMOOTHING_WINDOWS_MS,
    ScoredStream,
    choose_threshold,
    sweep_thresholds,
)
from kws.stream_metrics import TfExampleFigures, WakewordFigures
from kws.streaming import (
    Detection,
    Recognizer,
    SmoothedScores,
    Spotter,
    StreamSettings,
    Windower,
    load_settings,
    read_ground_truth,
    recognize,
    save_settings,
    score_stream,
    tf_example_settings,
)
from kws.zoo import build_model

REPO = Path(__file__).resolve().parents[1]
LABELS = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off",
          "stop", "go"]
RATE = 16000


def one_hot(label, p=0.95):
    scores = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    scores[LABELS.index(label)] = p
    return scores


def scores_of(label):
    """A confident label, or '?' for a pause where no class stands out (noise, breath)."""
    return np.full(len(LABELS), 1 / len(LABELS)) if label == "?" else one_hot(label)


def run(recognizer, sequence, step_ms=30):
    """Feed (label, hops) runs; return [(time_ms, label)] of the detections."""
    found, t = [], 1000.0
    for label, hops in sequence:
        for _ in range(hops):
            d, _ = recognizer.process(scores_of(label), t)
            if d:
                found.append((t, d.label))
            t += step_ms
    return found


def tf_reference(sequence, settings, step_ms=30):
    """The TF example's RecognizeCommands.process_latest_result, transcribed."""
    prev, window, label_prev, time_prev, out, t = [], settings.average_window_ms, "_silence_", \
        -np.inf, [], 1000.0
    for label, hops in sequence:
        for _ in range(hops):
            prev.append((t, scores_of(label)))
            while t - window > prev[0][0]:
                prev.pop(0)
            if len(prev) >= settings.minimum_count and t - prev[0][0] >= window / 4:
                avg = np.mean([p for _, p in prev], axis=0)
                top = LABELS[int(np.argmax(avg))]
                since = np.inf if label_prev == "_silence_" else t - time_prev
                if avg.max() > settings.detection_threshold and top != label_prev and \
                        since > settings.suppression_ms:
                    label_prev, time_prev = top, t
                    if top != "_silence_":
                        out.append((t, top))
            t += step_ms
    return out


SEQUENCES = [
    [("_silence_", 40), ("yes", 20), ("?", 40), ("yes", 20), ("_silence_", 30)],
    [("_silence_", 40), ("yes", 20), ("_silence_", 40), ("yes", 20), ("?", 30)],
    [("_silence_", 10), ("no", 15), ("go", 15), ("_silence_", 5), ("go", 20), ("up", 30)],
    [("left", 50), ("_unknown_", 20), ("left", 25), ("_silence_", 50)],
]


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_without_rearm_the_recognizer_is_the_tf_examples(sequence):
    settings = tf_example_settings()
    assert run(Recognizer(LABELS, settings), sequence) == tf_reference(sequence, settings)


def test_rearm_fires_the_same_word_twice_the_tf_example_once():
    sequence = SEQUENCES[0]
    tf_found = run(Recognizer(LABELS, tf_example_settings()), sequence)
    ours = run(Recognizer(LABELS, StreamSettings()), sequence)
    assert [label for _, label in tf_found] == ["yes"]
    assert [label for _, label in ours] == ["yes", "yes"]
    # a word held on does not fire again: it must fall below the threshold first
    held = run(Recognizer(LABELS, StreamSettings()), [("yes", 200)])
    assert [label for _, label in held] == ["yes"]


def random_scores(seed, hops=3000):
    """Runs of confident labels, pauses and mixtures, renormalised: scores whose moving
    average crosses every threshold, in every order."""
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < hops:
        label = LABELS[rng.integers(len(LABELS))] if rng.random() < 0.8 else "?"
        p = rng.uniform(0.5, 1.0)
        base = scores_of(label) if label == "?" else one_hot(label, p)
        rows += [base * rng.uniform(0.7, 1.3, len(LABELS)) for _ in range(rng.integers(3, 40))]
    probs = np.asarray(rows[:hops])
    return np.cumsum(rng.uniform(15, 45, hops)) + 1000, probs / probs.sum(1, keepdims=True)


@pytest.mark.parametrize("seed", range(3))
def test_recognize_over_scored_audio_is_the_live_recognizer(seed):
    times, probs = random_scores(seed)
    for rearm in (True, False):
        for window, count in ((500.0, 4), (200.0, 1)):
            smoothed = SmoothedScores.of(times, probs, LABELS,
                                         StreamSettings(average_window_ms=window,
                                                        minimum_count=count))
            for threshold in (0.3, 0.5, 0.7, 0.9):
                for suppression in (0.0, 500.0, 1500.0):
                    settings = StreamSettings(
                        rearm=rearm, average_window_ms=window, minimum_count=count,
                        detection_threshold=threshold, suppression_ms=suppression)
                    live = Recognizer(LABELS, settings)
                    expected = [d for t, p in zip(times, probs)
                                if (d := live.process(p, t)[0])]
                    assert recognize(times, probs, LABELS, settings, smoothed) == expected
                    assert recognize(times, probs, LABELS, settings) == expected
                    assert expected or threshold == 0.9


def test_settings_are_checked_and_stored_beside_the_model(tmp_path):
    with pytest.raises(UserError, match="stride_ms"):
        StreamSettings(stride_ms=5)
    with pytest.raises(UserError, match="detection_threshold"):
        StreamSettings(detection_threshold=1.5)
    for name, value in [("average_window_ms", 1e308), ("suppression_ms", 1e12),
                        ("minimum_count", float("inf")), ("minimum_count", 10**6)]:
        with pytest.raises(UserError, match=name):  # bounded: a stream's state stays small
            StreamSettings(**{name: value})
    model = tmp_path / "m_int8.tflite"
    assert load_settings(str(model)) == StreamSettings()
    path = save_settings(str(model), StreamSettings(detection_threshold=0.8, stride_ms=20))
    assert path.endswith("m_streaming.json")
    assert load_settings(str(model)).detection_threshold == 0.8
    assert load_settings(str(model), {"detection_threshold": 0.6}).detection_threshold == 0.6
    unset = load_settings(str(model), {"detection_threshold": None, "stride_ms": None})
    assert unset.detection_threshold == 0.8 and unset.stride_ms == 20  # unset flags keep them
    Path(path).write_text("[1, 2]")
    with pytest.raises(UserError, match="not a streaming settings file"):
        load_settings(str(model))
    for bad in ('{"stride_ms": "fast"}', '{"rearm": "false"}', '{"suppression_ms": NaN}',
                '{"minimum_count": 2.5}'):
        Path(path).write_text(bad)
        with pytest.raises(UserError, match="streaming settings"):
            load_settings(str(model))


@pytest.mark.parametrize("chunk", [1, 160, 7919, 16000, 100000])
def test_the_ring_buffer_gives_the_same_windows_for_any_chunking(chunk):
    audio = np.random.default_rng(0).uniform(-1, 1, 3 * RATE + 123).astype(np.float32)
    windows = Windower(20.0)
    got = [(t, w.copy(), a) for i in range(0, len(audio), chunk)
           for t, w, a in windows.feed(audio[i:i + chunk])]
    assert len(got) == 1 + (len(audio) - RATE) // 320
    for k, (t, w, advanced) in enumerate(got):
        end = RATE + 320 * k
        assert t == end / 16 and advanced == (RATE if k == 0 else 320)
        np.testing.assert_array_equal(w, audio[end - RATE:end])
    assert not list(Windower(20.0).feed(audio[:RATE - 1]))  # under a second: nothing yet


def test_cached_frames_equal_the_whole_windows_features():
    from kws.frontend import FrameCache, FrontEnd

    layer = build_model("edge_tcs", 12).get_layer("log_mel")

    front = FrontEnd(layer.stream_constants())
    audio = np.random.default_rng(1).normal(0, 0.1, 4 * RATE).astype(np.float32)
    np.testing.assert_allclose(front.window_features(audio[:RATE]),
                               np.asarray(layer(audio[None, :RATE]))[0], atol=2e-5)
    cache = FrameCache(front)
    for _, window, advanced in Windower(20.0).feed(audio):
        np.testing.assert_allclose(cache.update(window, advanced),
                                   front.window_features(window), atol=1e-6)
    cache = FrameCache(front)  # a stride that is not a frame hop: recomputed each time
    for _, window, advanced in Windower(30.0).feed(audio):
        np.testing.assert_array_equal(cache.update(window, advanced),
                                      front.window_features(window))


def test_measures_on_hand_made_detections():
    truth = [("yes", 1000), ("no", 5000), ("_unknown_", 9000), ("go", 13000)]
    found = [Detection(1800, "yes", 0.9), Detection(2500, "yes", 0.9),   # a second yes: FA
             Detection(5600, "up", 0.9),                                 # wrong word: FA
             Detection(9700, "left", 0.9),                               # on an unknown: FA
             Detection(13000 + 1750, "go", 0.9),                         # at the edge: hit
             Detection(20000, "_unknown_", 0.8)]                         # not a command
    ww = WakewordFigures.of(found, truth, 3600, ["yes", "no", "up", "left", "go"])
    assert ww.command_words == 3 and ww.detected == 2 and ww.false_accepts == 3
    assert ww.false_accepts_per_hour == 3 and ww.miss_rate_by_word == {
        "go": 0.0, "no": 1.0, "yes": 0.0}
    tf = TfExampleFigures.of(found, truth, tolerance_ms=1500)
    assert tf.ground_truth_words == 4
    assert tf.correct == pytest.approx(2 / 4) and tf.false_positive == pytest.approx(1 / 4)


def test_false_accepts_are_counted_by_the_clip_they_fired_on():
    truth = [("_unknown_", 1000, "_unknown_/tree_a.wav"), ("_unknown_", 5000, "six/b.wav"),
             ("_unknown_", 9000, "_unknown_/tree_a.wav")]
    found = [Detection(2200, "right", 0.9), Detection(9900, "right", 0.95),
             Detection(5900, "on", 0.9), Detection(30000, "go", 0.9),  # noise: no word near
             Detection(6000, "_unknown_", 0.9)]
    ww = WakewordFigures.of(found, truth, 3600, ["right", "on", "go"])
    assert ww.false_accepts == 4
    assert ww.false_accepts_by_clip == [
        {"heard": "_unknown_/tree_a.wav", "fired": "right", "count": 2},
        {"heard": "six/b.wav", "fired": "on", "count": 1},
        {"heard": "", "fired": "go", "count": 1}]
    assert ww.distinct_clips == 2 and ww.clips_fired_on == 2
    assert "false_accepts_by_clip" not in WakewordFigures.of(
        found, [t[:2] for t in truth], 3600, ["right"]).as_json()


def test_the_sweep_chooses_the_window_that_hears_a_short_word():
    # "go" is sure for 200 ms (10 hops); a 500 ms average never makes it the top class, a
    # 200 ms one does: the sweep must try both windows and choose the one that detects it
    labels = ["_silence_", "_unknown_", "go"]
    times = np.arange(20.0, 60_000.0, 20.0)
    probs = np.tile(np.float32([1, 0, 0]), (len(times), 1))
    probs[(times > 10_000) & (times <= 10_200)] = [0, 0, 1]
    positive = ScoredStream("p.wav", [("go", 9_900.0, "go/a.wav")], times, probs, 60.0, 0.0)
    negative = ScoredStream("n.wav", [], times, np.tile(np.float32([1, 0, 0]), (len(times), 1)),
                            60.0, 0.0)
    settings = StreamSettings(stride_ms=20, average_window_ms=500, suppression_ms=1000)
    points = sweep_thresholds(labels, settings, positive, negative, 1750.0, 1500.0, (200, 500))
    assert {p.average_window_ms for p in points} == {200.0, 500.0}
    assert all(p.detection_rate == 0 for p in points if p.average_window_ms == 500)
    chosen = choose_threshold(points, target_fa_per_hour=2.0)
    assert chosen.average_window_ms == 200 and chosen.detection_rate == 1.0
    # without windows the sweep keeps the settings' own
    assert {p.average_window_ms for p in sweep_thresholds(
        labels, settings, positive, negative, 1750.0, 1500.0)} == {500.0}


def test_rounds_draw_every_clip_once_before_any_repeats():
    from kws.stream_making import Rounds

    rounds = Rounds(range(7), np.random.RandomState(0))
    for _ in range(3):
        assert sorted(rounds.draw() for _ in range(7)) == list(range(7))
    assert not Rounds([], np.random.RandomState(0))


class ToneModel:
    """A fake model: the label of the loudest of a few tones in the newest half second."""

    FREQS = {"yes": 500, "no": 900, "up": 1300}

    def predict(self, window):
        tail = window[-8000:]
        spectrum = np.abs(np.fft.rfft(tail))
        scores = np.full(len(LABELS), 1 / len(LABELS))  # a pause: nothing stands out
        if np.sqrt(np.mean(tail ** 2)) > 0.05:
            best = max(self.FREQS, key=lambda w: spectrum[self.FREQS[w] // 2])
            scores = one_hot(best)
        return scores


def tone(freq, seconds=0.6):
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tone_stream(words, gap_s=1.5):
    """Silence, then each word's tone with gaps; ground truth (label, onset ms)."""
    parts, truth, t = [np.zeros(RATE, np.float32)], [], RATE
    for w in words:
        clip = tone(ToneModel.FREQS[w])
        truth.append((w, t * 1000 / RATE))
        parts += [clip, np.zeros(int(gap_s * RATE), np.float32)]
        t += len(clip) + int(gap_s * RATE)
    return np.concatenate(parts), truth


def test_a_stream_whose_detections_are_known_exactly():
    words = ["yes", "no", "no", "up", "yes"]
    audio, truth = tone_stream(words)
    settings = StreamSettings(stride_ms=20)
    spotter = Spotter(ToneModel(), LABELS, settings)
    found = [d for i in range(0, len(audio), 321) for d in spotter.feed(audio[i:i + 321])]
    assert [d.label for d in found] == words  # "no no" fires twice
    for d, (_, onset) in zip(found, truth):
        assert onset < d.time_ms <= onset + 1750
    times, probs = score_stream(ToneModel(), [audio], 20)
    assert [d.label for d in recognize(times, probs, LABELS, settings)] == words
    tf_found = recognize(*score_stream(ToneModel(), [audio], 30), LABELS, tf_example_settings())
    assert [d.label for d in tf_found] == ["yes", "no", "up", "yes"]  # the quirk: one "no"
    stats = WakewordFigures.of(found, truth, len(audio) / RATE, ["yes", "no", "up"])
    assert stats.detection_rate == 1.0 and stats.false_accepts == 0


# ---- the scripts ------------------------------------------------------------------------------
def script(name, *args, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, name, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def tone_model(tmp_path_factory):
    """A ds_cnn_s that tells three tones from silence and noise, frozen with its stream body."""
    import keras

    import freeze_graph

    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    clips, targets = [], []
    for k, label in enumerate(LABELS):
        for _ in range(12):
            x = rng.normal(0, 0.01, RATE).astype(np.float32)
            if label in ToneModel.FREQS:
                start = rng.integers(0, RATE - 9600)
                x[start:start + 9600] += tone(ToneModel.FREQS[label] * rng.uniform(0.97, 1.03),
                                              0.6)
            elif label == "_unknown_":
                x += rng.normal(0, 0.2, RATE).astype(np.float32)
            clips.append(x)
            targets.append(k)
    keras.utils.set_random_seed(0)
    net = build_model("ds_cnn_s", len(LABELS), features="logmel")
    net.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(np.stack(clips), np.array(targets), epochs=40, batch_size=16, verbose=0)
    data = root / "data"
    for k, (clip, target) in enumerate(zip(clips, targets)):
        write_wav(data / LABELS[target] / f"s{k % 12}_nohash_{k}.wav", clip)
    (root / "ck").mkdir()
    net.save(root / "ck" / "m.keras")
    (root / "ck" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    assert freeze_graph.main(["--checkpoint", str(root / "ck" / "m.keras"), "--frozen_path",
                              str(root / "tf" / "m.pb"), "--calibration_data", str(data),
                              "--num_calibration", "60", "--num_check", "24",
                              "--int8_agreement", "0.8"]) == 0
    return {"root": root, "data": data, "tflite": root / "tf" / "m_int8.tflite",
            "float": root / "tf" / "m.tflite", "keras": root / "ck" / "m.keras"}


@pytest.fixture(scope="module")
def known_stream(tone_model):
    audio, truth = tone_stream(["yes", "no", "no", "up", "yes", "up", "no"])
    audio = audio + np.random.default_rng(9).normal(0, 0.01, len(audio)).astype(np.float32)
    path = tone_model["root"] / "stream.wav"
    write_wav(path, audio)
    rows = ["label,time_ms"] + [f"{w},{t:.0f}" for w, t in truth]
    path.with_suffix(".csv").write_text("\n".join(rows) + "\n")
    return path, truth


def test_label_stream_finds_the_words_in_order_and_writes_csv_and_plot(tone_model, known_stream,
                                                                      tmp_path):
    wav, truth = known_stream
    for model_file in ("tflite", "float", "keras"):
        out = tmp_path / f"{model_file}.csv"
        done = script("label_stream.py", "--model", tone_model[model_file], "--wav", wav,
                      "--csv", out, "--plot", tmp_path / "trace.png", "--stride_ms", "20",
                      "--detection_threshold", "0.6")
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["label"] for r in rows] == [w for w, _ in truth], (model_file, rows)
        assert list(rows[0]) == ["time_ms", "label", "score"]
        assert "yes" in done.stdout
    assert (tmp_path / "trace.png").stat().st_size > 1000
    # the same audio as raw PCM on standard input, in odd-sized pieces
    pcm = np.round(read_wav(wav, num_samples=None) * 32768).astype("<i2").tobytes() + b"\x01"
    done = subprocess.run([sys.executable, "label_stream.py", "--model", tone_model["tflite"],
                           "--raw", "-", "--stride_ms", "20", "--detection_threshold", "0.6",
                           "--quiet", "--csv", tmp_path / "raw.csv"], input=pcm, cwd=REPO,
                          capture_output=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert b"ended mid-sample" in done.stderr
    assert (tmp_path / "raw.csv").read_text() == (tmp_path / "tflite.csv").read_text()


def test_label_stream_bad_input_is_one_line(tone_model, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    short = tmp_path / "short.wav"
    write_wav(short, np.zeros(4000, np.float32))
    sf.write(tmp_path / "8k.wav", np.zeros(20000), 8000, subtype="PCM_16")
    m = tone_model["tflite"]
    cases = [(["--wav", empty], "empty file"), (["--wav", tmp_path / "none.wav"], "no such file"),
             (["--raw", "-", "--rate", "8000"], "must be 16000 Hz"),
             (["--raw", "file.pcm"], "--raw takes '-'"),
             (["--wav", short, "--stride_ms", "2"], "stride_ms")]
    for flags, message in cases:
        done = script("label_stream.py", "--model", m, *flags, check=False)
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 2 and message in last and "Traceback" not in done.stderr, \
            (flags, done.stderr[-800:])
    done = script("label_stream.py", "--model", m, "--wav", short)  # under a second: no window
    assert "0 detections in 0.2 s" in done.stderr
    done = script("label_stream.py", "--model", m, "--wav", tmp_path / "8k.wav")  # resampled
    assert "detections in 2.5 s of audio" in done.stderr


def test_mic_without_sounddevice_says_how_to_install_it(tone_model):
    import importlib.util

    if importlib.util.find_spec("sounddevice"):
        pytest.skip("sounddevice is installed here")
    done = script("label_stream.py", "--model", tone_model["tflite"], "--mic", check=False)
    assert done.returncode == 2
    assert "pip install sounddevice" in done.stderr.strip().splitlines()[-1]


def test_make_streams_is_seeded_and_its_truth_is_right(tone_model, tmp_path):
    noise = tmp_path / "noise"
    write_wav(noise / "n.wav", np.random.default_rng(3).normal(0, 0.1, 5 * RATE))
    args = ["--data_dir", tone_model["data"], "--noise_dir", noise, "--minutes", "0.5",
            "--snr_db", "20", "--seed", "4"]
    script("make_streams.py", *args, "--out", tmp_path / "a.wav")
    script("make_streams.py", *args, "--out", tmp_path / "b.wav", "--metrics_json",
           tmp_path / "b.json")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    truth = read_ground_truth(tmp_path / "a.csv")
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["words"] == len(truth) > 5 and summary["seconds"] == 30
    assert {label for label, _ in truth} <= set(LABELS[1:])
    audio = read_wav(tmp_path / "a.wav", num_samples=None)
    assert len(audio) == 30 * RATE
    for _, onset in truth:  # speech starts at each onset: louder than the gap before it
        i = int(onset * 16)
        assert np.abs(audio[i:i + 1600]).max() > 2 * np.abs(audio[i - 3200:i - 1600]).max()
    script("make_streams.py", *args, "--negative", "--out", tmp_path / "n.wav")
    assert {label for label, _ in read_ground_truth(tmp_path / "n.csv")} == {"_unknown_"}
    # other speech (a flat folder, no labels) joins the negative stream; each clip is named
    for k in range(3):
        write_wav(tmp_path / "other" / f"talk{k}.wav", tone(700 + 50 * k, 0.5))
    script("make_streams.py", *args, "--negative", "--other_dir", tmp_path / "other",
           "--other_share", "0.5", "--out", tmp_path / "o.wav", "--metrics_json",
           tmp_path / "o.json")
    placed = read_ground_truth(tmp_path / "o.csv", with_clips=True)
    other = [clip for _, _, clip in placed if clip.startswith("other/")]
    assert {label for label, _, _ in placed} == {"_unknown_"}
    assert 0 < len(other) < len(placed) and set(other) == {f"other/talk{k}.wav" for k in range(3)}
    assert json.loads((tmp_path / "o.json").read_text())["other_speech"] == len(other)
    unknown = [c for _, _, c in placed if not c.startswith("other/")]
    n = len(set(unknown))  # shuffled rounds: no clip twice before every clip once
    rounds = [unknown[i:i + n] for i in range(0, len(unknown), n)]
    assert all(len(set(r)) == len(r) for r in rounds)
    bad = script("make_streams.py", *args, "--minutes", "0", "--out", tmp_path / "x.wav",
                 check=False)
    assert bad.returncode == 2 and not (tmp_path / "x.wav").exists()


def test_streaming_accuracy_sweeps_and_stores_the_chosen_threshold(tone_model, known_stream,
                                                                  tmp_path):
    wav, truth = known_stream
    negative = tmp_path / "neg.wav"
    write_wav(negative, np.random.default_rng(5).normal(0, 0.2, 60 * RATE).astype(np.float32))
    (tmp_path / "neg.csv").write_text("label,time_ms\n")
    model_copy = tmp_path / "m_int8.tflite"
    for name in ("m_int8.tflite", "m_labels.txt", "m_stream_body_int8.tflite", "m_stream.npz"):
        (tmp_path / name).write_bytes((tone_model["tflite"].parent / name).read_bytes())
    metrics = tmp_path / "acc.json"
    script("streaming_accuracy.py", "--model", model_copy, "--wav", wav, "--negative_wav",
           negative, "--stride_ms", "20", "--sweep", "--sweep_windows", "300,500",
           "--plot", tmp_path / "det.png", "--also_tf_example", "--save_settings",
           "--target_fa_per_hour", "2", "--metrics_json", metrics)
    m = json.loads(metrics.read_text())
    assert m["result"]["positive"]["command_words"] == len(truth)
    assert m["result"]["positive"]["detection_rate"] == 1.0
    assert m["tf_example_recognizer"]["settings"]["rearm"] is False
    assert m["tf_example_recognizer"]["positive"]["detected"] < len(truth)  # "no no" once
    assert len(m["sweep"]) > 10 and m["chosen"]["false_accepts_per_hour"] <= 2
    assert (tmp_path / "det.png").stat().st_size > 1000
    stored = json.loads((tmp_path / "m_streaming.json").read_text())
    assert stored["detection_threshold"] == m["chosen"]["threshold"] and stored["stride_ms"] == 20
    assert {p["average_window_ms"] for p in m["sweep"]} == {300.0, 500.0}
    assert stored["average_window_ms"] == m["chosen"]["average_window_ms"]
    # label_stream.py now needs no recognizer flag: it reads the stored settings
    done = script("label_stream.py", "--model", model_copy, "--wav", wav, "--csv",
                  tmp_path / "d.csv")
    with open(tmp_path / "d.csv", newline="") as f:
        assert [r["label"] for r in csv.DictReader(f)] == [w for w, _ in truth]
    assert done.returncode == 0


def test_recognize_commands_reports_the_real_time_factor(tone_model, tmp_path):
    out = tmp_path / "rtf.json"
    script("recognize_commands.py", "--model", tone_model["tflite"], "--seconds", "20",
           "--stride_ms", "20", "--metrics_json", out)
    figures = json.loads(out.read_text())
    assert figures["hops"] == 1 + (20 * RATE - RATE) // 320
    assert 0 < figures["real_time_factor"] < 1 and figures["hop_latency_ms_p99"] > 0


def test_an_all_words_model_streams_in_the_12_classes(tmp_path):
    from kws.runtime import FoldedModel

    labels = LABELS + ["bed", "marvin"]

    class Fixed:
        def predict(self, window):
            p = np.zeros(len(labels))
            p[labels.index("marvin")], p[labels.index("yes")] = 0.6, 0.4
            return p

    folded = FoldedModel(Fixed(), labels)
    p = folded.predict(np.zeros(RATE, np.float32))
    assert p.shape == (12,) and p[1] == pytest.approx(0.6) and p[2] == pytest.approx(0.4)


def test_an_ensemble_averages_its_models_hop_by_hop():
    from kws.runtime import AveragedModel

    class Fixed:
        def __init__(self, label):
            self.num_outputs, self.label, self.hops = len(LABELS), label, 0

        def predict(self, window):
            return one_hot(self.label, 0.8)

        def predict_hop(self, window, advanced):
            self.hops += 1
            return self.predict(window)

    a, b = Fixed("yes"), Fixed("no")
    both = AveragedModel([a, b])
    window = np.zeros(RATE, np.float32)
    assert both.predict(window) == pytest.approx((one_hot("yes", 0.8) + one_hot("no", 0.8)) / 2)
    both.predict_hop(window, 320)
    assert a.hops == b.hops == 1  # each keeps its own front-end cache up to date


def test_streaming_accuracy_and_label_stream_run_an_ensemble(tone_model, known_stream,
                                                             tmp_path):
    wav, truth = known_stream
    metrics = tmp_path / "acc.json"
    script("streaming_accuracy.py", "--model", tone_model["tflite"], "--also_model",
           tone_model["float"], "--wav", wav, "--stride_ms", "20", "--detection_threshold",
           "0.6", "--metrics_json", metrics)
    m = json.loads(metrics.read_text())
    assert m["also_models"] == [str(tone_model["float"])]
    assert m["result"]["positive"]["detection_rate"] == 1.0
    script("label_stream.py", "--model", tone_model["tflite"], "--also_model",
           tone_model["keras"], "--wav", wav, "--stride_ms", "20",
           "--detection_threshold", "0.6", "--csv", tmp_path / "d.csv")
    with open(tmp_path / "d.csv", newline="") as f:
        assert [r["label"] for r in csv.DictReader(f)] == [w for w, _ in truth]
    done = script("streaming_accuracy.py", "--model", tone_model["tflite"], "--also_model",
                  tone_model["float"], "--wav", wav, "--sweep", "--save_settings", check=False)
    assert done.returncode == 2 and "ensemble" in done.stderr
    # the same labels in another order cannot be averaged class by class
    other = tmp_path / "other.tflite"
    other.write_bytes(tone_model["float"].read_bytes())
    (tmp_path / "other_labels.txt").write_text("\n".join(LABELS[::-1]) + "\n")
    done = script("label_stream.py", "--model", tone_model["tflite"], "--also_model", other,
                  "--wav", wav, check=False)
    assert done.returncode == 2 and "same labels" in done.stderr
    assert "Traceback" not in done.stderr


def test_refreezing_removes_stream_files_of_the_earlier_model(tone_model, tmp_path):
    import freeze_graph

    out = tmp_path / "tf"
    out.mkdir()
    for name in ("m_stream_body.tflite", "m_stream_body_int8.tflite", "m_stream.npz",
                 "m_streaming.json"):
        (out / name).write_bytes(b"old")
    assert freeze_graph.main(["--checkpoint", str(tone_model["keras"]), "--frozen_path",
                              str(out / "m.pb"), "--formats", "tflite", "--num_check", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["m.tflite", "m_info.json", "m_labels.txt"]


def test_streaming_scripts_refuse_what_they_cannot_measure(tone_model, known_stream, tmp_path):
    wav, _ = known_stream
    negative = tmp_path / "n.wav"
    write_wav(negative, np.zeros(3 * RATE, np.float32))
    (tmp_path / "n.csv").write_text("label,time_ms\n_unknown_,500\n")
    done = script("streaming_accuracy.py", "--model", tone_model["tflite"], "--wav", negative,
                  check=False)
    assert done.returncode == 2 and "names no command word" in done.stderr
    short = tmp_path / "short.wav"
    write_wav(short, np.zeros(RATE // 2, np.float32))
    done = script("recognize_commands.py", "--model", tone_model["tflite"], "--wav", short,
                  check=False)
    assert done.returncode == 2 and "shorter than one second" in done.stderr
    for windows, message in (("300,x", "comma-separated numbers"),
                             ("-5", "average_window_ms must be in")):
        done = script("streaming_accuracy.py", "--model", tone_model["tflite"], "--wav", wav,
                      "--sweep", f"--sweep_windows={windows}", check=False)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    done = script("streaming_accuracy.py", "--model", tone_model["tflite"], "--wav", wav,
                  "--sweep_windows", "300", check=False)
    assert done.returncode == 2 and "--sweep_windows needs --sweep" in done.stderr


def test_streams_scored_in_worker_processes_are_scored_as_here(tone_model, known_stream):
    from kws.stream_eval import StreamJob, score_streams

    wav, _ = known_stream
    jobs = [StreamJob(str(wav), "", 30.0, negative=True), StreamJob(str(wav), "", 20.0)]
    model = [str(tone_model["tflite"])]
    here = score_streams(model, jobs, workers=1)
    there = score_streams(model, jobs + jobs[:1], workers=2)  # longest first, once each
    assert list(there) == jobs
    for job in jobs:
        (labels, a), (labels_there, b) = here[job], there[job]
        assert labels == labels_there and a.truth == b.truth and a.seconds == b.seconds
        np.testing.assert_array_equal(a.times, b.times)
        np.testing.assert_array_equal(a.probs, b.probs)
    assert 0 < len(here[jobs[0]][1].times) < len(here[jobs[1]][1].times)


def test_a_signal_stops_the_scoring_workers_without_waiting_for_them(tone_model, known_stream,
                                                                     tmp_path):
    """Each worker waits forever on a ground truth that is a FIFO nobody writes: the command
    must still exit on SIGTERM (it waited for its workers before)."""
    import signal
    import time

    wav, _ = known_stream
    fifo = tmp_path / "truth.csv"
    os.mkfifo(fifo)
    code = ("import sys\nfrom kws.common import run_cli\n"
            "from kws.stream_eval import StreamJob, score_streams\n"
            "def main(argv=None):\n"
            f"    jobs = [StreamJob({str(wav)!r}, {str(fifo)!r}, s) for s in (20.0, 30.0)]\n"
            f"    score_streams([{str(tone_model['tflite'])!r}], jobs, workers=2)\n"
            "if __name__ == '__main__':\n    run_cli(main)\n")
    (tmp_path / "score.py").write_text(code)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "score.py")], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and \
                len(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                   text=True).stdout.split()) < 2:
            time.sleep(0.2)
        time.sleep(2)  # the workers open the FIFO and block there
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_recipe_measures_streams_in_process_as_streaming_accuracy_does(tone_model, tmp_path,
                                                                        monkeypatch):
    """kws.recipe.streaming_figures reads typed figures (kws.stream_eval), not a subprocess's
    JSON: its metrics files hold what streaming_accuracy.py writes for the same streams."""
    from kws.recipe import streaming_figures

    noise = tmp_path / "noise"
    write_wav(noise / "n.wav", np.random.default_rng(3).normal(0, 0.1, 5 * RATE))
    for name in ("m_int8.tflite", "m_labels.txt", "m_stream_body_int8.tflite", "m_stream.npz"):
        (tmp_path / name).write_bytes((tone_model["tflite"].parent / name).read_bytes())
    model, out = tmp_path / "m_int8.tflite", tmp_path / "streams"
    monkeypatch.chdir(REPO)
    summary = streaming_figures(sys.executable, str(model), str(tone_model["data"]),
                                str(tone_model["data"]), str(noise), str(out), minutes=0.5,
                                negative_minutes=0.5, target_fa_per_hour=1e9,
                                recognizer={"stride_ms": 20})
    stored = json.loads((tmp_path / "m_streaming.json").read_text())
    assert stored["stride_ms"] == 20 == summary["settings"]["stride_ms"]
    assert stored["detection_threshold"] == summary["chosen_on_validation"]["threshold"]
    # the window is chosen with the threshold, on validation; the held-out sweep keeps it
    validation = json.loads((out / "validation.metrics.json").read_text())
    assert {p["average_window_ms"] for p in validation["sweep"]} == set(SMOOTHING_WINDOWS_MS)
    assert stored["average_window_ms"] == summary["chosen_on_validation"]["average_window_ms"]
    test = json.loads((out / "test.metrics.json").read_text())
    assert {p["average_window_ms"] for p in test["sweep"]} == {stored["average_window_ms"]}
    assert summary["ours"]["detection_rate"] == test["result"]["positive"]["detection_rate"]
    assert summary["tf_example"]["tf_example_figures"] == \
        test["tf_example_recognizer"]["tf_example"]
    assert (out / "validation_det.png").exists() and (out / "test_det.png").exists()
    script("streaming_accuracy.py", "--model", model, "--wav", out / "test.wav",
           "--negative_wav", out / "test_negative.wav", "--also_tf_example", "--sweep",
           "--metrics_json", tmp_path / "script.json")
    by_script = json.loads((tmp_path / "script.json").read_text())
    for record in (test, by_script):
        del record["real_time_factor"]
    assert by_script == test
