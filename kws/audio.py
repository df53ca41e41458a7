"""Audio I/O for every script: read any WAV as 16 kHz mono float32, write 16-bit WAV atomically.

    from kws.audio import read_wav
    samples = read_wav("data/train/audio/yes/0a7c2a8d_nohash_0.wav")   # float32 [16000] in [-1, 1]

Reads PCM 8/16/24/32-bit and float 32/64 (anything libsndfile reads), mixes channels to mono,
resamples with a polyphase filter and pads or crops to one second. A corrupt, empty, truncated or
non-audio file raises AudioError naming the file; folder loaders skip such files and warn once.
"""

import io
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from urllib.parse import unquote, urlsplit

import numpy as np
import soundfile as sf

from kws import CLIP_SAMPLES, SAMPLE_RATE
from kws.common import UserError, atomic_path

MAX_SECONDS = 600  # refuse to decode longer files: a mutated header must not allocate gigabytes
MAX_DECODED_SAMPLES = MAX_SECONDS * 48000 * 2  # frames x channels read at once (230 MB float32)
MAX_RESAMPLE_FACTOR = 1000  # polyphase up/down bound: all common rates are exact (44.1k: 160/441)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # scheme://..., RFC 3986
_TRUNCATED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
ENERGY_FRAME = SAMPLE_RATE // 100  # 10 ms: the frames loudness is measured in


def frame_energy(samples):
    """Energy (sum of squares, float64) of each whole 10 ms frame of samples."""
    frames = len(samples) // ENERGY_FRAME
    whole = samples[:frames * ENERGY_FRAME].astype(np.float64)
    return np.square(whole).reshape(frames, ENERGY_FRAME).sum(1)


class AudioError(UserError, ValueError):
    """A file that is not readable audio. The message names the file."""


class AudioTooLong(AudioError):
    """Audio longer than the caller allows (stream_wav's max_seconds)."""


def fit_length(samples, num_samples=CLIP_SAMPLES):
    """Pad with zeros at the end or crop to exactly num_samples."""
    if len(samples) >= num_samples:
        return samples[:num_samples]
    return np.pad(samples, (0, num_samples - len(samples)))


def resample_ratio(orig_rate, target_rate=SAMPLE_RATE):
    """(up, down) for resample_poly, both <= MAX_RESAMPLE_FACTOR.

    An odd rate such as 767999 Hz would need a 15M-tap filter (seconds, ~1 GB); it is approximated
    by the nearest small ratio instead (pitch error < 0.1%, none for any common rate).
    """
    ratio = Fraction(int(target_rate), int(orig_rate))
    if max(ratio.numerator, ratio.denominator) > MAX_RESAMPLE_FACTOR:
        if ratio < 1:
            ratio = ratio.limit_denominator(MAX_RESAMPLE_FACTOR)
        else:
            ratio = 1 / (1 / ratio).limit_denominator(MAX_RESAMPLE_FACTOR)
    return ratio.numerator, ratio.denominator


def resample(samples, orig_rate, target_rate=SAMPLE_RATE, name="audio"):
    up, down = resample_ratio(orig_rate, target_rate)
    if up == down:
        return samples
    try:
        from scipy.signal import resample_poly  # imported when needed: 0.6 s of every start
    except ImportError:  # the Pi bundle leaves scipy out
        raise resampler_missing(name, orig_rate, target_rate, "scipy") from None
    return resample_poly(samples, up, down).astype(np.float32)


def resampler_missing(name, orig_rate, target_rate, package):
    """The error for a clip at another rate where the resampling package is not installed: a
    stop for the whole run (not a clip to skip), since every such clip would be mislabelled."""
    return UserError(f"{name} is at {orig_rate} Hz: resampling it to {target_rate} Hz needs "
                     f"{package} (pip install {package}), or convert the audio first "
                     f"(ffmpeg -i IN -ar {target_rate} -ac 1 OUT.wav)")


def frames_needed(num_samples, orig_rate, target_rate=SAMPLE_RATE):
    """Source frames that determine the first num_samples resampled outputs exactly.

    resample_poly's filter reaches 10 * max(up, down) upsampled steps each side of an output.
    """
    up, down = resample_ratio(orig_rate, target_rate)
    if up == down:
        return num_samples
    return ((num_samples - 1) * down + 10 * max(up, down)) // up + 2


class _ClampedBytesIO(io.BytesIO):
    """BytesIO whose seek before the start clamps to 0 (as a relative seek does) instead of
    raising inside soundfile's C callback, where the error would only be printed."""

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_SET and offset < 0:
            offset = 0
        return super().seek(offset, whence)


def _open(source, name):
    try:
        return sf.SoundFile(source)
    except Exception as e:  # libsndfile says "Format not recognised", "Error in WAV file" ...
        reason = re.sub(r"^Error opening <_io\.BytesIO object at \w+>: ", "",
                        str(e).splitlines()[-1])
        raise AudioError(f"{name}: not readable audio ({reason[:120]})") from None


def _decode(source, name, sample_rate, num_samples):
    with _open(source, name) as f:
        rate, channels, frames = f.samplerate, f.channels, f.frames
        if not (1 <= channels <= 64) or not (100 <= rate <= 768000):
            raise AudioError(f"{name}: implausible header ({channels} channels at {rate} Hz)")
        if frames <= 0:
            raise AudioError(f"{name}: empty audio (0 samples)")
        if frames > MAX_SECONDS * rate:
            raise AudioError(f"{name}: too long ({frames / rate:.0f} s > {MAX_SECONDS} s)")
        truncated = _TRUNCATED.search(f.extra_info)
        if truncated and int(truncated.group(2)) < int(truncated.group(1)):
            raise AudioError(f"{name}: truncated (data chunk says {truncated.group(1)} bytes, "
                             f"file holds {truncated.group(2)})")
        # Only the frames that shape the output are read (exactly the same result), and always a
        # counted number: libsndfile calls some formats (GSM 6.10) non-seekable.
        needed = frames_needed(num_samples, rate, sample_rate) if num_samples else frames
        needed = min(frames, needed)
        if needed * channels > MAX_DECODED_SAMPLES:
            raise AudioError(f"{name}: too large ({needed} frames x {channels} channels)")
        try:
            data = f.read(needed, dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioError(f"{name}: corrupt audio data ({e})") from None
    if len(data) == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{name}: non-finite samples")
    # Float files may hold values near float32's limit: mix in float64 and let the cast back
    # overflow quietly to inf, which the clip turns into +-1.
    with np.errstate(over="ignore"):
        samples = data.mean(axis=1, dtype=np.float64) if channels > 1 else data[:, 0]
        samples = np.clip(resample(samples, rate, sample_rate, name), -1.0,
                          1.0).astype(np.float32)
    return fit_length(samples, num_samples) if num_samples else samples


def read_wav(path, sample_rate=SAMPLE_RATE, num_samples=CLIP_SAMPLES):
    """Read an audio file as float32 mono at sample_rate, padded/cropped to num_samples.

    num_samples=None keeps the whole file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file")
    return _decode(path, path, sample_rate, num_samples)


def local_path(source):
    """The local path of a clip source: a path as it is, a file:// URI's path; None for another
    URI (s3://, gs://, hdfs://...)."""
    source = os.fspath(source)
    if not _URI.match(source):
        return source
    if source.partition("://")[0].lower() != "file":
        return None
    return unquote(urlsplit(source).path)


def check_source(source):
    """Raise UserError for a URI that no reader here can open (before any work starts)."""
    if local_path(source) is None:
        scheme = source.partition("://")[0]
        try:
            import pyarrow.fs  # noqa: F401  (ships with ray[data])
        except ImportError:
            raise UserError(f"{source}: {scheme}:// URIs are read through pyarrow, which is not "
                            "installed (pip install pyarrow), or mount the bucket and list "
                            "local paths") from None
    return source


def read_source(source, sample_rate=SAMPLE_RATE, num_samples=CLIP_SAMPLES):
    """read_wav for a path, a file:// URI or, through pyarrow's filesystems, any URI pyarrow
    opens (s3://, gs://, hdfs://): a missing remote file is unreadable audio, a filesystem that
    cannot be reached stops the run (UserError)."""
    path = local_path(source)
    if path is not None:
        return read_wav(path, sample_rate, num_samples)
    check_source(source)
    import pyarrow.fs

    try:
        filesystem, inner = pyarrow.fs.FileSystem.from_uri(source)
        with filesystem.open_input_stream(inner) as f:
            data = f.read()
    except FileNotFoundError:
        raise AudioError(f"{source}: no such file") from None
    except (OSError, ValueError) as e:  # pyarrow.ArrowInvalid is a ValueError
        raise UserError(f"{source}: cannot read ({str(e).splitlines()[0][:160]})") from None
    return decode_wav_bytes(data, source, sample_rate, num_samples)


def decode_wav_bytes(data, name="<bytes>", sample_rate=SAMPLE_RATE, num_samples=CLIP_SAMPLES):
    """Same as read_wav, for the bytes of a file."""
    if not data:
        raise AudioError(f"{name}: empty file")
    return _decode(_ClampedBytesIO(data), name, sample_rate, num_samples)


def write_wav(path, samples, sample_rate=SAMPLE_RATE):
    """Write float samples in [-1, 1] as 16-bit PCM WAV; the file appears only when complete."""
    samples = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    buffer = io.BytesIO()  # libsndfile fsyncs on close: encoding in memory is 10x faster
    sf.write(buffer, samples, sample_rate, subtype="PCM_16", format="WAV")
    with atomic_path(path, suffix=".wav") as tmp:
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())


def warn_skipped(errors, what="files"):
    """Warn once about unreadable files: the count and the first few names."""
    if errors:
        first = "; ".join(str(e) for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        print(f"warning: skipped {len(errors)} unreadable {what}: {first}{more}", file=sys.stderr)


def read_many(paths, strict=False, num_samples=CLIP_SAMPLES, workers=None, progress=False,
              errors=None):
    """Decode many files in parallel. Returns (float32 [n, num_samples], indices of the paths kept).

    Unreadable files are skipped with one warning, or raise AudioError when strict. Pass a list
    as errors to collect the AudioErrors there instead of warning (a caller that reads in chunks
    warns once at the end).
    """
    paths = list(paths)
    out = np.zeros((len(paths), num_samples), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    failed = {}  # index -> AudioError; threads finish in any order, the report is in path order

    def load(i):
        try:
            out[i] = read_source(paths[i], num_samples=num_samples)
            ok[i] = True
        except AudioError as e:
            if strict:
                raise
            failed[i] = e

    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        jobs = pool.map(load, range(len(paths)))
        if progress and len(paths) > 500:
            from tqdm import tqdm
            jobs = tqdm(jobs, total=len(paths), desc="decode", unit="clip", mininterval=1.0)
        for _ in jobs:
            pass
    in_order = [failed[i] for i in sorted(failed)]
    if errors is not None:
        errors.extend(in_order)
    else:
        warn_skipped(in_order)
    kept = np.flatnonzero(ok)
    return out[kept], kept


def stream_wav(path, block_samples=SAMPLE_RATE, max_seconds=None):
    """Yield float32 mono blocks of a file of any length at 16 kHz, never loading it whole:
    the streaming counterpart of read_wav (channels mixed, other rates resampled by soxr).
    max_seconds bounds the work a file can cause, not its bytes (10 minutes of silence compress
    to a few KB): a header that says longer is refused before decoding, and since a header can
    be wrong or silent about its length, so is the block that decodes past the limit
    (AudioTooLong)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file")
    with _open(path, path) as f:
        rate, channels = f.samplerate, f.channels
        if not (1 <= channels <= 64) or not (100 <= rate <= 768000):
            raise AudioError(f"{path}: implausible header ({channels} channels at {rate} Hz)")
        max_frames = None if max_seconds is None else int(max_seconds * rate)
        if max_frames is not None and 0 < f.frames < 2**62 and f.frames > max_frames:
            raise AudioTooLong(f"{path}: {f.frames / rate:.1f} s of audio, over the "
                               f"{max_seconds:g} s limit")
        resampler = None
        if rate != SAMPLE_RATE:
            try:
                import soxr
            except ImportError:  # the Pi bundle leaves soxr out
                raise resampler_missing(path, rate, SAMPLE_RATE, "soxr") from None

            resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        source_block = max(int(block_samples * rate / SAMPLE_RATE), 1)
        decoded = 0
        while True:
            try:
                data = f.read(source_block, dtype="float32", always_2d=True)
            except Exception as e:
                raise AudioError(f"{path}: corrupt audio data ({e})") from None
            decoded += len(data)
            if max_frames is not None and decoded > max_frames:
                raise AudioTooLong(f"{path}: more than {max_seconds:g} s of audio (the limit)")
            last = len(data) < source_block
            mono = data.mean(axis=1, dtype=np.float64) if channels > 1 else data[:, 0]
            mono = np.nan_to_num(np.clip(mono, -1.0, 1.0)).astype(np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if len(mono):
                yield mono
            if last:
                return
