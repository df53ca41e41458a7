"""The spectrogram pack rendered back to audio (kws.pack_audio, real.py --pack_audio): a rendered
image gives its image back, only training-side speakers render, and a render resumes."""

import os
import subprocess
import sys

import numpy as np
import pytest

from kws import CLIP_SAMPLES, real
from kws.audio import read_wav
from kws.common import REPO, UserError
from kws.corpora import extra_split
from kws.folders import real_split
from kws.frontend import FrontEnd
from kws.layers import PackFeatures
from kws.pack import Pack, parse_name
from kws.pack_audio import PEAK, pick_images, render_pack_audio, vocode


def grey_of(clip):
    layer = PackFeatures()
    layer.build((1, CLIP_SAMPLES))
    return FrontEnd(layer.stream_constants()).window_features(clip) * 64 + 128


def vowel(level=0.1, seed=0):
    """A voiced sound: harmonics of 180 Hz under a rising and falling envelope, and a little
    noise."""
    t = np.arange(CLIP_SAMPLES) / CLIP_SAMPLES
    clip = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 12))
    noise = np.random.default_rng(seed).normal(0, 0.01, CLIP_SAMPLES)
    return (level * clip * np.hanning(CLIP_SAMPLES) + noise).astype(np.float32)


def image_of(clip):
    return np.round(np.clip(grey_of(clip), 0, 255)).astype(np.uint8)


def test_a_rendered_image_gives_its_image_back_at_the_level_of_the_sound():
    sound = vowel()
    image = image_of(sound)
    audio = vocode(image[None])
    assert audio.shape == (1, CLIP_SAMPLES) and audio.dtype == np.float32
    # the level: no spike where one Hann window barely covers the first and last samples
    rms = lambda x: np.sqrt(np.mean(np.square(x)))  # noqa: E731
    assert 0.8 < rms(audio[0]) / rms(sound) < 1.25
    assert np.abs(audio[0]).max() < 2 * np.abs(sound).max()
    back = grey_of(audio[0])
    loud = image > 40  # where the vowel is, not the floor
    assert np.abs(back - image)[loud].mean() < 4  # grey levels: 9.9 a natural-log unit
    assert np.corrcoef(back[loud], image[loud])[0, 1] > 0.95
    assert np.array_equal(vocode(image[None]), audio)  # the same seed: the same phase


def test_a_loud_image_renders_under_full_scale():
    audio = vocode(image_of(np.clip(vowel(level=3.0), -1, 1))[None])
    assert 0.5 < np.abs(audio).max() <= PEAK + 1e-6


def test_bad_images_are_one_line_errors():
    with pytest.raises(UserError, match="98, 40"):
        vocode(np.zeros((2, 40, 98), np.uint8))


def small_pack(names, image=None):
    image = image_of(vowel()) if image is None else image
    return Pack([parse_name(n) for n in names], np.stack([image] * len(names)))


NAMES = ["yes/aaaa0001_nohash_0.yes.jpg", "yes/aaaa0001_nohash_1.yes.jpg",
         "no/aaaa0001_nohash_0.no.jpg", "yes/bbbb0002_nohash_0.yes.jpg",
         "unknown/aaaa0001_nohash_0.cat.jpg", "unknown/aaaa0001_nohash_0.dog.jpg",
         "unknown/aaaa0001_nohash_1.dog.jpg", "_background_noise_/1_background.jpg"]


def test_images_are_picked_per_label_from_kept_speakers_only():
    pack = small_pack(NAMES)
    picked = pick_images(pack, 1, lambda speaker: speaker == "aaaa0001")
    labels = sorted(pack.entries[i].label for i in picked)
    assert labels == ["_unknown_", "no", "yes"]  # the other words share one label's share
    assert all(pack.entries[i].speaker == "aaaa0001" for i in picked)
    picked = pick_images(pack, 5, lambda speaker: True)
    assert len(picked) == 7 and NAMES.index("_background_noise_/1_background.jpg") not in picked
    assert pick_images(pack, 5, lambda speaker: True, seed=3) == picked  # all of them, sorted


def test_a_render_writes_word_folders_and_resumes(tmp_path):
    pack = small_pack(NAMES)
    counts = render_pack_audio(pack, str(tmp_path), 5, lambda speaker: speaker == "aaaa0001")
    assert counts == {"yes": 2, "no": 1, "cat": 1, "dog": 2}
    clip = tmp_path / "dog" / "aaaa0001_nohash_1.wav"
    assert read_wav(str(clip)).shape == (CLIP_SAMPLES,)
    assert not (tmp_path / "yes" / "bbbb0002_nohash_0.wav").exists()
    os.utime(clip, (1, 1))
    assert render_pack_audio(pack, str(tmp_path), 5, lambda s: s == "aaaa0001") == counts
    assert os.stat(clip).st_mtime == 1  # kept, not rendered again
    with pytest.raises(UserError, match="at least 1"):
        render_pack_audio(pack, str(tmp_path), 0, lambda s: True)
    with pytest.raises(UserError, match="no image"):
        render_pack_audio(pack, str(tmp_path), 5, lambda s: False)


def first_speaker(dev, extra):
    """A speaker id whose dev-split set is dev and whose extra-split set is extra."""
    for i in range(100_000):
        speaker = f"{i:08x}"
        if real_split(f"{speaker}_nohash_0") == dev and extra_split(speaker) == extra:
            return speaker
    raise AssertionError("no such speaker")


@pytest.mark.parametrize("dev, extra, renders", [
    ("training", "training", True), ("validation", "training", False),
    ("testing", "training", False), ("training", "validation", False)])
def test_only_speakers_every_split_trains_on_render(dev, extra, renders):
    # a pack speaker may be a dev speaker or an extra one: either split holding them out keeps
    # their images out of the rendered audio, as both keep them out of the pack trainer
    assert real.trains_in_every_split(first_speaker(dev, extra)) is renders


def test_real_py_refuses_a_negative_pack_audio():
    result = subprocess.run([sys.executable, "real.py", "--pack_audio", "-1"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--pack_audio must be >= 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_rendered_folder_resumes_only_under_the_same_settings(tmp_path, monkeypatch):
    pack_zip = tmp_path / "pack.zip"
    pack_zip.write_bytes(b"only its path and the settings matter here")
    monkeypatch.setattr(real, "read_pack", lambda path, cache_dir: small_pack(NAMES))
    out, counts = real.stage_pack_audio(str(pack_zip), str(tmp_path), 1)
    kept = [os.path.join(out, w, n) for w in os.listdir(out) if os.path.isdir(os.path.join(out, w))
            for n in os.listdir(os.path.join(out, w))]
    assert counts == {"yes": 1, "no": 1, "dog": 1} and len(kept) == 3
    os.utime(kept[0], (1, 1))
    real.stage_pack_audio(str(pack_zip), str(tmp_path), 1)
    assert os.stat(kept[0]).st_mtime == 1  # the same settings: resumed
    real.stage_pack_audio(str(pack_zip), str(tmp_path), 2)
    # other settings: rendered afresh (the clip is new, or no longer picked)
    assert not os.path.exists(kept[0]) or os.stat(kept[0]).st_mtime != 1
