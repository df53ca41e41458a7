"""Clips in other containers than WAV (FLAC, Ogg Vorbis, Ogg/Opus: the real extra sets are
Opus) read through the one reader, in every folder layout, and a cut-short file is a named,
counted skip, never a traceback."""

import numpy as np
import pytest
import soundfile as sf

from kws.audio import AudioError, read_many, read_wav, stream_wav
from kws.data import AudioProcessor
from kws.folders import clips_in, list_test_clips, scan_data_dir

RATE = 16000
FORMATS = {".opus": ("OGG", "OPUS"), ".ogg": ("OGG", "VORBIS"), ".flac": ("FLAC", "PCM_16"),
           ".wav": ("WAV", "PCM_16")}


def chirp(seconds=1.0, f0=300.0, f1=1200.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / seconds / 2) * t)).astype(np.float32)


def write_clip(path, samples, extension):
    fmt, subtype = FORMATS[extension]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, RATE, format=fmt, subtype=subtype)
    return path


@pytest.mark.parametrize("extension", sorted(FORMATS))
def test_every_format_reads_as_the_same_clip(tmp_path, extension):
    x = chirp()
    got = read_wav(write_clip(tmp_path / f"clip{extension}", x, extension))
    assert got.shape == (RATE,) and got.dtype == np.float32
    assert np.corrcoef(x, got)[0, 1] > 0.98  # lossy codecs stay close
    streamed = np.concatenate(list(stream_wav(tmp_path / f"clip{extension}", 4000)))
    np.testing.assert_allclose(streamed[:RATE], got, atol=1e-4)


def test_data_folders_and_test_folders_take_every_format(tmp_path):
    data = tmp_path / "data"
    for i, extension in enumerate(sorted(FORMATS)):
        write_clip(data / "yes" / f"spk{i}_nohash_0{extension}", chirp(), extension)
        write_clip(data / "no" / f"spk{i}_nohash_0{extension}", chirp(f0=500), extension)
    (data / "yes" / "notes.txt").write_text("not a clip")
    assert clips_in(data / "yes") == sorted(f"spk{i}_nohash_0{e}"
                                            for i, e in enumerate(sorted(FORMATS)))
    scanned = scan_data_dir(str(data))
    assert sum(len(f) for f in scanned.words.values()) == 2 * len(FORMATS)
    paths, labels = list_test_clips(str(data))
    assert len(paths) == 2 * len(FORMATS) and set(labels) == {"yes", "no"}
    processor = AudioProcessor([str(data)], silence_percentage=0, unknown_percentage=0,
                               validation_percentage=0, testing_percentage=0)
    assert processor.set_size("training") == 2 * len(FORMATS)


def test_a_cut_short_opus_file_is_a_named_skip(tmp_path, capsys):
    good = write_clip(tmp_path / "good.opus", chirp(), ".opus")
    cut = tmp_path / "cut.opus"
    cut.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    with pytest.raises(AudioError, match="cut.opus"):
        read_wav(cut)
    audio, kept = read_many([good, cut, tmp_path / "missing.opus"])
    assert list(kept) == [0] and audio.shape == (1, RATE)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 2 unreadable" in err and "cut.opus" in err
