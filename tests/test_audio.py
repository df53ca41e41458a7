"""audio.py: reading every WAV flavour as 16 kHz mono float32, atomic writes, bad-file handling."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kws import audio
from kws.audio import AudioError, read_many, read_wav, write_wav

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DIGITS = SHARED / "free_spoken_digits" / "recordings"


def sine(freq=440.0, rate=16000, seconds=1.0, amplitude=0.5):
    t = np.arange(int(round(rate * seconds))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, samples, rate=16000, subtype="PCM_16", fmt="WAV"):
    sf.write(path, samples, rate, subtype=subtype, format=fmt)
    return path


def peak_hz(clip, rate=16000):
    spectrum = np.abs(np.fft.rfft(clip * np.hanning(len(clip))))
    return np.argmax(spectrum) * rate / len(clip)


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("subtype, tolerance", [
    ("PCM_U8", 1 / 100), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-6),
    ("FLOAT", 1e-7), ("DOUBLE", 1e-7),
])
def test_reads_every_pcm_and_float_subtype(tmp_path, subtype, tolerance):
    x = sine()
    path = write(tmp_path / f"{subtype}.wav", x, subtype=subtype)
    assert sf.info(path).subtype == subtype
    clip = read_wav(path)
    assert clip.dtype == np.float32 and clip.shape == (16000,)
    assert np.abs(clip - x).max() < tolerance


def test_stereo_is_mixed_to_mono(tmp_path):
    x = sine()
    clip = read_wav(write(tmp_path / "s.wav", np.stack([1.2 * x, 0.4 * x], axis=1),
                          subtype="FLOAT"))
    np.testing.assert_allclose(clip, 0.8 * x, atol=1e-6)
    cancelled = read_wav(write(tmp_path / "c.wav", np.stack([x, -x], axis=1), subtype="FLOAT"))
    assert np.abs(cancelled).max() < 1e-7


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
@pytest.mark.parametrize("freq", [440, 1000, 3000])
def test_resampling_keeps_a_sines_frequency_and_level(tmp_path, rate, freq):
    clip = read_wav(write(tmp_path / "x.wav", sine(freq, rate), rate=rate))
    assert clip.shape == (16000,) and clip.dtype == np.float32
    assert abs(peak_hz(clip) - freq) <= 1.0
    rms = np.sqrt(np.mean(clip[200:-200] ** 2))  # away from the filter's edges
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_short_files_are_padded_and_long_files_cropped(tmp_path):
    half = sine(seconds=0.5)
    clip = read_wav(write(tmp_path / "short.wav", half, subtype="FLOAT"))
    np.testing.assert_array_equal(clip[:8000], half)
    assert not clip[8000:].any()
    long = sine(seconds=2.3)
    path = write(tmp_path / "long.wav", long, subtype="FLOAT")
    np.testing.assert_array_equal(read_wav(path), long[:16000])
    assert read_wav(path, num_samples=None).shape == (len(long),)
    assert read_wav(path, num_samples=4000).shape == (4000,)
    eight_k = write(tmp_path / "8k.wav", sine(rate=8000, seconds=0.5), rate=8000)
    assert read_wav(eight_k, num_samples=None).shape == (8000,)


@pytest.mark.parametrize("rate", [44100, 7919, 96000])
def test_reading_only_the_needed_frames_changes_nothing(tmp_path, rate):
    # read_wav decodes just the frames that shape the first second; the result must equal
    # resampling the whole file and cropping.
    x = np.random.default_rng(1).uniform(-0.9, 0.9, 3 * rate).astype(np.float32)
    path = write(tmp_path / "x.wav", x, rate=rate, subtype="FLOAT")
    whole = audio.fit_length(read_wav(path, num_samples=None))
    np.testing.assert_array_equal(read_wav(path), whole)


def test_output_is_clipped_to_unit_range(tmp_path):
    x = 1.7 * sine(amplitude=1.0)
    clip = read_wav(write(tmp_path / "loud.wav", x, subtype="FLOAT"))
    assert clip.dtype == np.float32 and clip.max() == 1.0 and clip.min() == -1.0


@pytest.mark.parametrize("subtype, rate", [("ULAW", 8000), ("ALAW", 8000), ("IMA_ADPCM", 16000),
                                           ("MS_ADPCM", 16000), ("GSM610", 8000)])
def test_compressed_wav_codecs(tmp_path, subtype, rate):
    clip = read_wav(write(tmp_path / "c.wav", sine(1000, rate), rate=rate, subtype=subtype))
    assert clip.shape == (16000,) and abs(peak_hz(clip) - 1000) <= 2.0


def test_other_containers(tmp_path):
    x = sine()
    for fmt, ext in [("WAVEX", "wav"), ("FLAC", "flac"), ("AIFF", "aiff"), ("RF64", "wav")]:
        clip = read_wav(write(tmp_path / f"{fmt}.{ext}", x, fmt=fmt))
        assert np.abs(clip - x).max() < 1e-4, fmt


def test_resample_ratio_is_exact_for_common_rates_and_bounded_for_odd_ones():
    assert audio.resample_ratio(44100) == (160, 441)
    assert audio.resample_ratio(8000) == (2, 1)
    assert audio.resample_ratio(48000) == (1, 3)
    assert audio.resample_ratio(11025) == (640, 441)
    for rate in (767999, 99991, 7919, 101, 100, 768000):
        up, down = audio.resample_ratio(rate)
        assert max(up, down) <= audio.MAX_RESAMPLE_FACTOR
        assert rate * up / down == pytest.approx(16000, rel=1e-3)


# ----------------------------------------------------------------------------- writing


def test_write_wav_round_trip(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, 16000).astype(np.float32)
    path = tmp_path / "sub" / "dir" / "x.wav"
    write_wav(path, x)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16",
                                                                            16000)
    np.testing.assert_allclose(read_wav(path), x, atol=1 / 32767 + 1e-6)
    assert sorted(os.listdir(path.parent)) == ["x.wav"]  # no temporary file left behind


def test_write_wav_clips_and_keeps_the_rate(tmp_path):
    path = tmp_path / "loud.wav"
    write_wav(path, np.array([2.0, -3.0, 0.5], dtype=np.float64), sample_rate=8000)
    data, rate = sf.read(path, dtype="float32")
    assert rate == 8000
    np.testing.assert_allclose(data, [32767 / 32768, -1.0, 0.5], atol=1e-4)


def test_failed_write_leaves_the_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "x.wav"
    write_wav(path, sine())
    before = path.read_bytes()
    with pytest.raises(sf.LibsndfileError):  # libsndfile refuses a 0 Hz file
        write_wav(path, sine(), sample_rate=0)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["x.wav"]

    real_replace = os.replace

    def full_disk(src, dst):  # the temp file is written, then the rename fails
        assert Path(src).read_bytes()[:4] == b"RIFF"
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="disk full"):
        write_wav(path, sine())
    monkeypatch.setattr(os, "replace", real_replace)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["x.wav"]


# ----------------------------------------------------------------------------- bad files


def _bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    good = tmp_path / "good.wav"
    write_wav(good, sine())
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not audio\n" * 20)
    elif kind == "random":
        path.write_bytes(np.random.default_rng(2).bytes(5000))
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:20000])
    elif kind == "header_only":
        path.write_bytes(good.read_bytes()[:44])
    elif kind == "no_frames":
        write_wav(path, np.zeros(0, dtype=np.float32))
    elif kind == "nan":
        x = sine()
        x[100] = np.nan
        write(path, x, subtype="FLOAT")
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind", ["empty", "text", "random", "truncated", "header_only",
                                  "no_frames", "nan", "folder", "missing"])
def test_unreadable_files_raise_audio_error_naming_the_file(tmp_path, kind):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(AudioError) as e:
        read_wav(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    if path.is_file():
        with pytest.raises(AudioError, match="clip.wav"):
            audio.decode_wav_bytes(path.read_bytes(), "clip.wav")


def test_read_many_skips_bad_files_with_one_warning(tmp_path, capsys):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"ok{i}.wav")
        write_wav(paths[-1], sine(300 + 100 * i))
    paths.insert(1, _bad_file(tmp_path, "text"))
    paths.insert(4, tmp_path / "missing.wav")
    clips, kept = read_many(paths, workers=3)
    assert clips.shape == (4, 16000) and clips.dtype == np.float32
    assert kept.tolist() == [0, 2, 3, 5]
    for row, i in zip(clips, kept):
        np.testing.assert_array_equal(row, read_wav(paths[i]))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: skipped 2 unreadable files")
    assert "text.wav" in err[0] and "missing.wav" in err[0]
    with pytest.raises(AudioError):
        read_many(paths, strict=True)


def test_read_many_of_nothing(capsys):
    clips, kept = read_many([])
    assert clips.shape == (0, 16000) and kept.size == 0 and capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- real clips


def test_real_8khz_digits_resample_to_one_second():
    if not DIGITS.is_dir():
        pytest.skip(f"real clips not available: {DIGITS}")
    paths = sorted(DIGITS.glob("*.wav"))[:60]
    assert paths, f"no WAVs in {DIGITS}"
    clips, kept = read_many(paths)
    assert clips.shape == (len(paths), 16000) and len(kept) == len(paths)
    lengths = set()
    for path, clip in zip(paths[:20], clips):
        info = sf.info(path)
        assert info.samplerate == 8000 and info.frames < 8000
        lengths.add(info.frames)
        whole = read_wav(path, num_samples=None)
        assert len(whole) == 2 * info.frames  # 8 kHz -> 16 kHz
        np.testing.assert_array_equal(clip[: len(whole)], whole)
        assert not clip[len(whole):].any() and np.abs(whole).max() > 0.01
    assert len(lengths) > 5  # variable-length clips
