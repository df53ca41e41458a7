"""Training on the spectrogram pack: its images as examples (split by speaker like audio), noise
images for silence, shifted and gained batches, epochs that mix pack and audio batches, and the
pack's images paired with the same takes' audio (fit_frontend.py)."""

import dataclasses
import math
import os

import numpy as np

from kws import CLIP_SAMPLES
from kws.audio import read_many
from kws.common import UserError
from kws.folders import real_split
from kws.frontend import FrontEnd
from kws.labels import SILENCE_LABEL
from kws.pack import (
    GREY_CENTRE,
    GREY_OFFSET,
    GREY_SCALE,
    GREY_SPREAD,
    PACK_FRAMES,
    paired_clips,
    read_pack,
)


def mix_with_pack(processor, train, val, front, pack, frequency, batch_size, seed,
                  more_held_out=(), with_silence=False, shift_frames=10):
    """(training batches, validation batches, report) for kws.layers.pack_trainer: batches of
    ((audio, image features, from_audio), labels), `frequency` of the training batches drawn
    from the pack (pack_dataset, augmented as features), the others audio clips of `train`
    (their front end, the PackFeatures layer `front`, runs in the train step); `val` is audio.
    The speakers the processor holds out (testing, and validation unless it trains on it) lose
    their pack images too, as do more_held_out (speakers of streams or tests made from folders
    training never reads). shift_frames: the images' time shift, as the audio's time_shift_ms."""
    import tensorflow as tf

    held_out = processor.held_out_speakers | set(more_held_out)
    images, labels = pack_examples(pack, processor.words_list, held_out, with_silence)
    label_shape = train.element_spec[1].shape
    soft_width = label_shape[-1] if len(label_shape) > 1 else None
    batches = pack_dataset(images, labels, batch_size, seed,
                           noise_images(processor.noise_train, front, seed=seed),
                           shift_frames=shift_frames,
                           num_classes=soft_width - 1 if soft_width else None)
    image_shape = batches.element_spec[0].shape[1:]

    def from_audio(x, y):
        n = tf.shape(x)[0]
        return (x, tf.zeros(tf.concat([[n], image_shape], 0)), tf.ones([n], tf.bool)), y

    def from_pack(x, y):
        n = tf.shape(x)[0]
        return (tf.zeros([n, CLIP_SAMPLES]), x, tf.zeros([n], tf.bool)), y

    mixed = mix_batches(train.map(from_audio), batches.map(from_pack), frequency, seed)
    report = {"images": len(images), "held_out_speakers": len(held_out)}
    return mixed.prefetch(tf.data.AUTOTUNE), val.map(from_audio), report


def mix_batches(audio, pack, frequency, seed):
    """Batches drawn from pack with probability frequency, else from audio, for as long as
    they are asked for. The audio batches repeat: they are a finite run of epochs x their
    steps, which a random draw exhausts before the last step about half the time, and the
    batches after that were all pack images (no silence, the pack's features alone): they
    shifted BatchNormalization's statistics and collapsed the last epoch's validation accuracy
    (0.96 to 0.87). Until the audio runs out the batches are the same as without the repeat."""
    import tensorflow as tf

    return tf.data.Dataset.sample_from_datasets([audio.repeat(), pack],
                                                [1 - frequency, frequency], seed=seed)


def pack_examples(pack, words_list, exclude_speakers=(), with_silence=False):
    """(images uint8 [n, 98, 40], label indices int32 [n]) of a kws.pack.Pack for a model of
    words_list: command words as themselves, the pack's other words as themselves where the
    model has them and as _unknown_ otherwise; speakers in exclude_speakers left out (the
    held-out speakers of the audio sets must not train in either form). The pack's noise
    crops (silence) are left out unless with_silence: they come from the same recordings as
    the held-out silence clips."""
    index = {w: i for i, w in enumerate(words_list)}
    excluded = set(exclude_speakers)
    keep, labels = [], []
    for i, e in enumerate(pack.entries):
        if e.speaker in excluded or (e.label == SILENCE_LABEL and not with_silence):
            continue
        label = e.word if e.word in index else e.label
        if label not in index:
            continue
        keep.append(i)
        labels.append(index[label])
    if not keep:
        raise UserError("no image of the spectrogram pack is left to train on")
    return pack.images[keep], np.array(labels, np.int32)


def noise_images(noise, layer, count=256, seed=0):
    """Grey-level images [count, 98, 40] of random one-second crops of noise recordings, as
    the model's PackFeatures `layer` sees them: the noise pack images are mixed with."""
    if not noise:
        return None
    front = FrontEnd(layer.stream_constants())
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        recording = noise[rng.integers(len(noise))]
        start = rng.integers(max(len(recording) - CLIP_SAMPLES, 0) + 1)
        clip = np.zeros(CLIP_SAMPLES, np.float32)
        piece = recording[start:start + CLIP_SAMPLES]
        clip[:len(piece)] = piece
        out.append(front.window_features(clip) * 64 + 128)
    return np.stack(out).astype(np.float32)


def pack_dataset(images, labels, batch_size, seed, noise=None, shift_frames=10, gain_db=6.0,
                 noise_frequency=0.5, snr_db=(0.0, 20.0), num_classes=None):
    """An endless tf.data.Dataset of (features float32 [B, 98, 40], labels int32 [B]) from pack
    images (with num_classes, labels float32 [B, 1 + num_classes] as AudioProcessor.dataset
    gives them with soft targets: the label, then -1s for no soft target), drawn at random and
    augmented as features allow: a time shift of up to shift_frames (the frames it opens are
    the image's quietest), a gain of up to +-gain_db (an offset in grey levels: 2 * GREY_SCALE
    * ln(gain)), and with noise_frequency a noise image (noise_images) added in the power domain
    at an SNR drawn from snr_db. Masking is the model's SpecAugment. Each batch is augmented
    whole, from its number and the seed alone (a per-example map costs several times the CPU,
    which on a small machine the train step waits for)."""
    import tensorflow as tf

    images = tf.constant(images)
    labels = tf.constant(labels)
    n = int(images.shape[0])
    use_noise = noise_frequency if noise is not None else 0.0
    noise = tf.constant(noise if noise is not None else np.zeros((1, 98, 40), np.float32))
    max_offset = 2 * GREY_SCALE * math.log(10 ** (gain_db / 20))
    frame = tf.range(PACK_FRAMES)[None, :]

    def augment(batch):
        def uniform(k, low, high, dtype=tf.float32):
            return tf.random.stateless_uniform([batch_size], [seed, batch * 8 + k], low, high,
                                               dtype=dtype)

        i = uniform(0, 0, n, tf.int64)
        grey = tf.cast(tf.gather(images, i), tf.float32)
        floor = tf.reduce_min(grey, axis=1, keepdims=True)
        source = frame - uniform(1, -shift_frames, shift_frames + 1, tf.int32)[:, None]
        inside = (source >= 0) & (source < PACK_FRAMES)
        shifted = tf.gather(grey, tf.clip_by_value(source, 0, PACK_FRAMES - 1), axis=1,
                            batch_dims=1)
        grey = tf.where(inside[:, :, None], shifted, floor)
        grey += uniform(2, -max_offset, max_offset)[:, None, None]
        if use_noise:
            pick = uniform(3, 0, noise.shape[0], tf.int32)
            snr = uniform(4, snr_db[0], snr_db[1])
            power = tf.exp((grey - GREY_OFFSET) / GREY_SCALE)
            noise_power = tf.exp((tf.gather(noise, pick) - GREY_OFFSET) / GREY_SCALE)
            ratio = tf.reduce_mean(power, [1, 2]) / tf.maximum(
                tf.reduce_mean(noise_power, [1, 2]), 1e-12)
            mixed = power + noise_power * (ratio * tf.pow(10.0, -snr / 10))[:, None, None]
            noisy = GREY_SCALE * tf.math.log(mixed) + GREY_OFFSET
            grey = tf.where((uniform(5, 0.0, 1.0) < use_noise)[:, None, None], noisy, grey)
        grey = tf.clip_by_value(grey, 0.0, 255.0)
        label = tf.gather(labels, i)
        if num_classes:
            label = tf.concat([tf.cast(label, tf.float32)[:, None],
                               -tf.ones([batch_size, num_classes])], 1)
        return (grey - GREY_CENTRE) * (1.0 / GREY_SPREAD), label

    return tf.data.Dataset.range(1 << 40).map(augment, num_parallel_calls=tf.data.AUTOTUNE,
                                              deterministic=True)


@dataclasses.dataclass
class PairedAudio:
    """The paired clips of a pack: audio, the pack's grey levels, and make real's set of each."""
    clips: np.ndarray  # float32 [n, 16000]
    grey: np.ndarray   # float64 [n, 98, 40]
    paths: list        # the clips' audio files
    sets: np.ndarray   # "training", "validation" or "testing" per clip


def paired_audio(pack_path, dev_dir, cache_dir):
    """Read the pack and the audio of every one of its images whose clip is in dev_dir."""
    if not os.path.isdir(dev_dir):
        raise UserError(f"dev clips not found: {dev_dir}")
    pack = read_pack(pack_path, cache_dir)
    pairs = paired_clips(pack, dev_dir)
    if not pairs:
        raise UserError(f"no image of {pack_path} has its audio in {dev_dir}")
    clips, kept = read_many([path for _, path in pairs])
    pairs = [pairs[i] for i in kept]
    paths = [path for _, path in pairs]
    sets = np.array([real_split(os.path.basename(p)) for p in paths])
    grey = pack.images[[i for i, _ in pairs]].astype(np.float64)
    return PairedAudio(clips, grey, paths, sets)
