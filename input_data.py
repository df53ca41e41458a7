"""AudioProcessor: find labelled clips, split them by speaker, and feed augmented batches to Keras.

    python input_data.py --data_dir data/synthetic/train/audio     # prints the class counts per set

Reads the Speech Commands training layout (`<word>/<speaker>_nohash_<n>.wav`, `_background_noise_/`,
optional `validation_list.txt` / `testing_list.txt` beside the word folders or one level up as in
Kaggle's `train/audio`), the official test-set layout (`_silence_/`, `_unknown_/`, the ten words),
several data dirs at once, and pseudo-labelled pools. The split follows the TF speech_commands
tutorial (`which_set`), so our sets equal the tutorial's on the real dataset.
"""

import argparse
import dataclasses
import math
import os
import sys

import numpy as np

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, AudioError, read_many, read_wav, warn_skipped
from kws.common import UserError, run_cli
from kws.folders import (  # noqa: F401  (re-exported: the scripts read folders through here)
    BACKGROUND_NOISE_DIR_NAME,
    MAX_NUM_WAVS_PER_CLASS,
    clips_in,
    list_test_clips,
    scan_data_dir,
    speaker_id,
    which_set,
)
from kws.labels import (  # noqa: F401  (the vocabulary, re-exported for the scripts)
    COMPETITION_LABELS,
    COMPETITION_WORDS,
    SILENCE_LABEL,
    UNKNOWN_LABEL,
    model_label,
    submission_label,
)

RANDOM_SEED = 59185
SETS = ("training", "validation", "testing")
EVAL_NOISE_FRACTION = 0.2  # the tail of each noise recording: evaluation silence only
PSEUDO_SOURCES_FILE = "pseudo_sources.csv"  # a pseudo pool: `file,fname` of each clip


@dataclasses.dataclass
class Augmentation:
    """Training-time augmentation: each kind with a probability and a range."""
    background_frequency: float = 0.8   # probability of mixing in background noise
    background_volume: float = 0.1      # noise gain drawn from U(0, background_volume)
    silence_volume: float = 1.0         # noise gain of silence clips, U(0, silence_volume)
    foreground_frequency: float = 0.0   # probability of scaling the speech
    foreground_volume_min: float = 0.8
    foreground_volume_max: float = 1.2
    time_shift_frequency: float = 1.0   # probability of shifting in time
    time_shift_ms: float = 100.0        # shift drawn from U(-time_shift_ms, time_shift_ms)
    time_shift_mode: str = "pad"        # "pad" (zeros in) or "roll" (circular)
    speed_frequency: float = 0.0        # probability of a speed change (tempo and pitch)
    speed_min: float = 0.9              # speed factor drawn from U(speed_min, speed_max)
    speed_max: float = 1.1

    def __post_init__(self):
        for name in ("background_frequency", "foreground_frequency", "time_shift_frequency",
                     "speed_frequency"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("background_volume", "silence_volume", "time_shift_ms"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.time_shift_ms >= 1000 * CLIP_SAMPLES / SAMPLE_RATE:
            raise UserError(f"time_shift_ms must be shorter than a clip, got {self.time_shift_ms}")
        if not 0 < self.foreground_volume_min <= self.foreground_volume_max:
            raise UserError("need 0 < foreground_volume_min <= foreground_volume_max")
        if not 0.5 <= self.speed_min <= self.speed_max <= 2.0:
            raise UserError("need 0.5 <= speed_min <= speed_max <= 2")
        if self.time_shift_mode not in ("pad", "roll"):
            raise UserError(f"time_shift_mode must be pad or roll, not {self.time_shift_mode!r}")

    @classmethod
    def from_dict(cls, options):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in fields})


@dataclasses.dataclass
class DataSettings:
    """What an AudioProcessor reads and how it splits it: the data flags of add_data_args, built
    once from parsed flags or a config (DataSettings.from_dict(vars(args)))."""
    data_dir: str = ""                   # comma-separated data folders
    wanted_words: str = ",".join(COMPETITION_WORDS)
    silence_percentage: float = 10.0
    unknown_percentage: float = 10.0
    validation_percentage: float = 10.0
    testing_percentage: float = 10.0
    split_salt: str = ""
    train_only_dir: list = dataclasses.field(default_factory=list)
    noise_dir: list = dataclasses.field(default_factory=list)
    pseudo_dir: list = dataclasses.field(default_factory=list)
    pseudo_frequency: float = 0.0
    eval_noise_fraction: float = EVAL_NOISE_FRACTION
    seed: int = RANDOM_SEED
    strict: bool = False
    train_on_validation: bool = False
    balance_words: bool = False

    @classmethod
    def from_dict(cls, options):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in fields and v is not None})


class AudioProcessor:
    """Index, split, decode and augment a keyword-spotting dataset.

    data_index[set] is a list of dicts {'label': label, 'file': path or None}; file None marks a
    silence clip made from background noise. words_list is the model's label order.
    """

    def __init__(self, data_dirs, wanted_words=None, silence_percentage=10.0,
                 unknown_percentage=10.0, validation_percentage=10.0, testing_percentage=10.0,
                 noise_dirs=(), pseudo_dirs=(), pseudo_frequency=0.0,
                 eval_noise_fraction=EVAL_NOISE_FRACTION, train_only_dirs=(),
                 split_salt="", seed=RANDOM_SEED, strict=False, train_on_validation=False,
                 balance_words=False):
        if isinstance(data_dirs, str):
            data_dirs = [d for d in data_dirs.split(",") if d]
        if not data_dirs:
            raise UserError("no data folder given")
        if not 0 <= pseudo_frequency < 1:
            raise UserError(f"pseudo_frequency must be in [0, 1), got {pseudo_frequency}")
        if not (0 <= validation_percentage <= 100 and 0 <= testing_percentage <= 100
                and validation_percentage + testing_percentage <= 100):
            raise UserError("validation_percentage and testing_percentage must be in [0, 100] "
                            f"with a sum <= 100, got {validation_percentage:g} and "
                            f"{testing_percentage:g}")
        if silence_percentage < 0:
            raise UserError(f"silence_percentage must be >= 0, got {silence_percentage:g}")
        self.seed = seed
        self.split_salt = split_salt
        self.strict = strict
        self.pseudo_frequency = pseudo_frequency if pseudo_dirs else 0.0
        self.balance_words = balance_words
        scanned = [scan_data_dir(d) for d in data_dirs]
        for d in train_only_dirs or ():
            scanned.append(dataclasses.replace(scan_data_dir(d), train_only=True))
        self.words_list = self._choose_words(scanned, wanted_words)
        self.word_to_index = {w: i for i, w in enumerate(self.words_list)}
        self._warn_near_words(scanned)
        self.train_on_validation = train_on_validation
        self.data_index = self._build_index(scanned, silence_percentage, unknown_percentage,
                                            validation_percentage, testing_percentage)
        if train_on_validation:  # a final fit: validation still reports, but is not held out
            self.data_index["training"] = self.data_index["training"] + \
                self.data_index["validation"]
        self.pseudo_index = self._pseudo_items([scan_data_dir(d) for d in pseudo_dirs])
        noise_files = [f for s in scanned for f in s.noise_files]
        for d in pseudo_dirs:
            pseudo_noise = os.path.join(d, BACKGROUND_NOISE_DIR_NAME)
            if os.path.isdir(pseudo_noise):
                noise_files += [os.path.join(pseudo_noise, f) for f in clips_in(pseudo_noise)]
        for d in noise_dirs or ():
            if not os.path.isdir(d):
                raise UserError(f"noise folder not found: {d}")
            noise_files += [os.path.join(d, f) for f in clips_in(d)]
        self.noise_train, self.noise_eval = self._load_noise(noise_files, eval_noise_fraction)
        self._audio = None   # decoded clips, filled on first use
        self._row = {}       # path -> row in self._audio
        self.soft_target_report = None

    @classmethod
    def from_settings(cls, settings):
        """The processor of a DataSettings (or of a dict of its fields)."""
        if isinstance(settings, dict):
            settings = DataSettings.from_dict(settings)
        s = settings
        return cls(s.data_dir, s.wanted_words, s.silence_percentage, s.unknown_percentage,
                   s.validation_percentage, s.testing_percentage, noise_dirs=s.noise_dir,
                   pseudo_dirs=s.pseudo_dir, pseudo_frequency=s.pseudo_frequency,
                   eval_noise_fraction=s.eval_noise_fraction, train_only_dirs=s.train_only_dir,
                   split_salt=s.split_salt, seed=s.seed, strict=s.strict,
                   train_on_validation=s.train_on_validation, balance_words=s.balance_words)

    # ---- indexing -------------------------------------------------------------------------
    @staticmethod
    def _choose_words(scanned, wanted_words):
        if wanted_words is None:
            wanted_words = COMPETITION_WORDS
        if isinstance(wanted_words, str):
            wanted_words = [w for w in wanted_words.split(",") if w]
        if wanted_words == ["all"]:
            found = {w for s in scanned for w in s.words} - {SILENCE_LABEL, UNKNOWN_LABEL}
            wanted_words = sorted(found)
        if not wanted_words:
            raise UserError("empty word list")
        if len(set(wanted_words)) != len(wanted_words):
            raise UserError(f"repeated words in {wanted_words}")
        return [SILENCE_LABEL, UNKNOWN_LABEL] + list(wanted_words)

    def _warn_near_words(self, scanned):
        """A folder `Yes ` or `YES` is not the word `yes`: its clips count as unknown. Say so."""
        wanted = {w.strip().lower(): w for w in self.words_list[2:]}
        for data_dir in scanned:
            for folder, files in data_dir.words.items():
                word = wanted.get(folder.strip().lower())
                if word and folder != word:
                    print(f"warning: folder {folder!r} in {data_dir.root} is not the word "
                          f"{word!r} (case or spaces differ): its {len(files)} clips count as "
                          f"{UNKNOWN_LABEL}; rename it to use them as {word!r}", file=sys.stderr)

    def _label_of_folder(self, folder):
        if folder == SILENCE_LABEL:
            return SILENCE_LABEL
        return folder if folder in self.word_to_index else UNKNOWN_LABEL

    def _assign_set(self, data_dir, word, fname, val_pct, test_pct):
        if data_dir.validation_list is not None or data_dir.testing_list is not None:
            key = f"{word}/{fname}"
            if data_dir.validation_list and key in data_dir.validation_list:
                return "validation"
            if data_dir.testing_list and key in data_dir.testing_list:
                return "testing"
            return "training"
        return which_set(fname, val_pct, test_pct, self.split_salt)

    def _build_index(self, scanned, silence_pct, unknown_pct, val_pct, test_pct):
        rng = np.random.RandomState(self.seed)
        wanted = {s: [] for s in SETS}
        unknown = {s: [] for s in SETS}
        held_out = set()  # speakers of held-out sets: train-only dirs must not leak them
        self._scanned_keys = []  # (key, path) of every clip found, sampled or not
        for data_dir in sorted(scanned, key=lambda d: d.train_only):
            for word, files in data_dir.words.items():
                label = self._label_of_folder(word)
                for fname in files:
                    self._scanned_keys.append((f"{word}/{fname}",
                                               os.path.join(data_dir.root, word, fname)))
                    if data_dir.train_only:
                        if speaker_id(fname) in held_out:
                            continue
                        which = "training"
                    else:
                        which = self._assign_set(data_dir, word, fname, val_pct, test_pct)
                        trained = which == "training" or (which == "validation"
                                                          and self.train_on_validation)
                        if not trained and "_nohash_" in fname:
                            held_out.add(speaker_id(fname))
                    item = {"label": label, "file": os.path.join(data_dir.root, word, fname),
                            "key": f"{word}/{fname}"}
                    (unknown if label == UNKNOWN_LABEL else wanted)[which].append(item)
        index = {}
        for which in SETS:
            items = wanted[which]
            set_size = sum(1 for it in items if it["label"] != SILENCE_LABEL)
            rng.shuffle(unknown[which])
            if unknown_pct is None or unknown_pct < 0:
                items += unknown[which]
            else:
                items += unknown[which][:int(math.ceil(set_size * unknown_pct / 100))]
            silence_size = int(math.ceil(set_size * silence_pct / 100))
            items += [{"label": SILENCE_LABEL, "file": None} for _ in range(silence_size)]
            rng.shuffle(items)
            index[which] = items
        return index

    def _pseudo_items(self, scanned):
        items = []
        for data_dir in scanned:
            sources = read_pseudo_sources(data_dir.root)
            for folder, files in data_dir.words.items():
                label = self._label_of_folder(model_label(folder))
                items += [{"label": label, "file": os.path.join(data_dir.root, folder, f),
                           "key": sources.get(f"{folder}/{f}", f"{folder}/{f}"),
                           "pseudo": True} for f in files]
        return items

    def _load_noise(self, files, eval_fraction):
        """Split every noise recording in time: the head trains, the tail makes eval silence."""
        train, evaluation, errors = [], [], []
        for f in files:
            try:
                noise = read_wav(f, num_samples=None)
            except AudioError as e:
                if self.strict:
                    raise
                errors.append(e)
                continue
            cut = int(len(noise) * (1 - eval_fraction))
            for part, pool in ((noise[:cut], train), (noise[cut:], evaluation)):
                if len(part):
                    pool.append(np.resize(part, max(len(part), CLIP_SAMPLES)))
        warn_skipped(errors, "noise files")
        return train, evaluation

    # ---- queries --------------------------------------------------------------------------
    def set_size(self, mode):
        return len(self.data_index[mode])

    def label_counts(self, mode):
        counts = {w: 0 for w in self.words_list}
        for item in self.data_index[mode]:
            counts[item["label"]] += 1
        return counts

    def speakers(self, mode):
        return {speaker_id(it["file"]) for it in self.data_index[mode]
                if it["file"] and "_nohash_" in it["file"]}

    # ---- decoding -------------------------------------------------------------------------
    def _decode_all(self):
        if self._audio is not None:
            return
        files = sorted({it["file"] for which in SETS for it in self.data_index[which]
                        if it["file"]} | {it["file"] for it in self.pseudo_index})
        audio, kept = read_many(files, strict=self.strict, progress=True)
        kept_files = {files[i] for i in kept}
        self._row = {files[i]: row for row, i in enumerate(kept)}
        # int16 halves the memory of the cache; the clips are 16-bit to begin with
        self._audio = np.round(audio * 32767).astype(np.int16)
        for which in SETS:
            self.data_index[which] = [it for it in self.data_index[which]
                                      if it["file"] is None or it["file"] in kept_files]
        self.pseudo_index = [it for it in self.pseudo_index if it["file"] in kept_files]

    def _rows_and_labels(self, items):
        rows = np.array([self._row[it["file"]] if it["file"] else -1 for it in items], np.int32)
        labels = np.array([self.word_to_index[it["label"]] for it in items], np.int32)
        return rows, labels

    def _augment(self, rows, seed, noise, augmentation, part=None):
        """Augmented float clips of cache rows (-1: a silence clip made from noise)."""
        clips = self._audio[np.maximum(rows, 0)]
        return augment_batch(clips, rows < 0, seed, noise, augmentation, scale=1 / 32767,
                             part=part)

    # ---- batches --------------------------------------------------------------------------
    def steps_per_epoch(self, batch_size):
        """Training batches per epoch; a pseudo pool adds examples on top of the labelled ones."""
        return math.ceil(self._epoch_length() / batch_size)

    def _epoch_length(self):
        n = len(self.data_index["training"])
        if self.pseudo_frequency and self.pseudo_index:
            return math.ceil(n / (1 - self.pseudo_frequency))
        return n

    def dataset(self, mode, batch_size=64, augmentation=None, seed=None, initial_epoch=0,
                epochs=None, steps_per_epoch=None, soft_targets=None, replicas=None):
        """A tf.data.Dataset of (audio float32 [B, 16000], labels) for model.fit.

        Training: epochs initial_epoch..epochs-1 back to back (None: forever), each of
        steps_per_epoch batches (default: one pass), shuffled and augmented from a seed and the
        epoch number alone, so a resumed run sees exactly the batches an uninterrupted run would.
        With a pseudo pool each example comes from it with probability pseudo_frequency. Other
        sets come once, in a fixed order, with silence made from held-out noise: the same every
        epoch.

        labels are int32 [B]; with soft_targets ({fname: probabilities over words_list}, see
        match_soft_targets for how fnames name clips) they are float32 [B, 1 + classes]: the
        label, then the clip's soft target or -1s.

        replicas=(first, count, total) (training only): the input of `count` of `total` replicas
        under tf.distribute, from replica `first` on. Each global batch of batch_size is cut
        into `total` consecutive slices (sizes differ by one at most when it does not divide)
        and this dataset yields slices first..first+count-1 of every batch in turn, each
        augmented exactly as in the whole batch: the replicas together see every example of an
        epoch once, and the same examples, batches and augmentation as one device.
        """
        import tensorflow as tf

        self._decode_all()
        training = mode == "training"
        augmentation = augmentation or Augmentation()
        seed = self.seed if seed is None else seed
        rows, labels = self._rows_and_labels(self.data_index[mode])
        if len(rows) == 0:
            raise UserError(f"the {mode} set is empty")
        if training:
            p_rows, p_labels = self._rows_and_labels(self.pseudo_index)
            if not self.pseudo_frequency or not len(p_rows):
                p_rows, p_labels = rows[:1], labels[:1]  # never drawn
            last = tf.data.Dataset.range(initial_epoch, epochs) if epochs else None
            epoch_ids = last if last is not None else tf.data.Dataset.range(initial_epoch, 1 << 40)
            steps = steps_per_epoch or self.steps_per_epoch(batch_size)
            ds = epoch_ids.flat_map(lambda epoch: self._training_epoch(
                epoch, rows, labels, p_rows, p_labels, batch_size, seed).repeat().take(steps))
            if replicas is not None:
                ds = ds.flat_map(lambda batch, key: replica_slices(batch, key, *replicas))
        else:
            ds = tf.data.Dataset.from_tensor_slices((rows, labels)).batch(batch_size)
            ds = ds.enumerate().map(lambda i, batch: (batch, i))  # fixed noise per batch
        noise = self.noise_train if training else self.noise_eval
        batch_fn = self._batch_fn(noise, augmentation if training else None,
                                  self._soft_table(soft_targets))
        ds = ds.map(batch_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def balance_weights(self, labels):
        """Per-example drawing weights that give every wanted word the same expected share of
        an epoch (the mean count of the words), or None when balance_words is off. Unknown and
        silence keep their share. Corpora differ wildly per word (the extra set: 2,100 `down`,
        17 `on`), so an epoch drawn this way sees all words equally often, while across epochs
        every clip of a large word still gets drawn."""
        if not self.balance_words:
            return None
        counts = np.bincount(labels, minlength=len(self.words_list)).astype(np.float64)
        words = [self.word_to_index[w] for w in self.words_list
                 if w not in (SILENCE_LABEL, UNKNOWN_LABEL) and counts[self.word_to_index[w]]]
        scale = np.ones_like(counts)
        if words:
            scale[words] = counts[words].mean() / counts[words]
        return scale[labels]

    def _training_epoch(self, epoch, rows, labels, p_rows, p_labels, batch_size, seed):
        import tensorflow as tf

        n = len(rows)
        length = self._epoch_length()
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        index = tf.range(length, dtype=tf.int64)
        weights = self.balance_weights(labels)
        if weights is None:
            order = tf.random.experimental.index_shuffle(index % n, key, n - 1)
        else:  # n draws with replacement, by the weights (inverse CDF)
            cdf = tf.constant(np.cumsum(weights) / weights.sum(), tf.float64)
            u = tf.random.stateless_uniform([length], key + 2, dtype=tf.float64)
            order = tf.minimum(tf.searchsorted(cdf, u, side="right", out_type=tf.int64), n - 1)
        from_pseudo = tf.random.stateless_uniform([length], key, dtype=tf.float32) < \
            self.pseudo_frequency
        pick = tf.random.stateless_uniform([length], key + 1, 0, len(p_rows), dtype=tf.int64)
        epoch_rows = tf.where(from_pseudo, tf.gather(p_rows, pick), tf.gather(rows, order))
        epoch_labels = tf.where(from_pseudo, tf.gather(p_labels, pick), tf.gather(labels, order))
        ds = tf.data.Dataset.from_tensor_slices((epoch_rows, epoch_labels)).batch(batch_size)
        # one augmentation seed per (seed, epoch, batch)
        return ds.enumerate().map(lambda i, batch: (batch, (seed * 1_000_003 + epoch) * 65_536 + i))

    def match_soft_targets(self, soft_targets):
        """{clip path: fname} for the clips that soft_targets names.

        A clip's fname is its path relative to its data folder (`yes/0a7c2a8d_nohash_0.wav`,
        what make_submission.py writes for that folder), or for a pseudo-pool clip the fname
        it was cut from (create_pseudo_with_thresh.py records it). A bare file name also
        matches, where it names one clip only: `X.wav` beside `yes/X.wav` and `no/X.wav` is
        refused, as is any fname that would give two clips the same target."""
        indexed = {it["file"] for which in SETS for it in self.data_index[which] if it["file"]}
        indexed |= {it["file"] for it in self.pseudo_index}
        # ambiguity is judged on every clip found, not only the ones this seed sampled
        keys = {path: key for key, path in self._scanned_keys}
        keys.update((it["file"], it["key"]) for it in self.pseudo_index)
        by_key, by_base = {}, {}
        for path, key in keys.items():
            by_key.setdefault(key, []).append(path)
            by_base.setdefault(key.rsplit("/", 1)[-1], []).append(path)
        matched = {}
        for fname in soft_targets:
            paths = by_key.get(fname) or ([] if "/" in fname else by_base.get(fname, []))
            if len(paths) > 1:
                raise UserError(f"teacher fname {fname!r} names {len(paths)} clips ("
                                f"{paths[0]}, {paths[1]}, ...): give each row the clip's path "
                                "relative to its data folder")
            paths = [p for p in paths if p in indexed]
            if paths:
                if paths[0] in matched:
                    raise UserError(f"teacher fnames {matched[paths[0]]!r} and {fname!r} both "
                                    f"name {paths[0]}")
                matched[paths[0]] = fname
        return matched

    def _soft_table(self, soft_targets):
        """Soft targets by cache row: float32 [rows + 1, classes], -1 where a clip has none."""
        if soft_targets is None:
            return None
        table = -np.ones((len(self._audio) + 1, len(self.words_list)), np.float32)
        matched = self.match_soft_targets(soft_targets)
        for path, fname in matched.items():
            if path in self._row:
                table[self._row[path]] = soft_targets[fname]
        pseudo = {it["file"] for it in self.pseudo_index}
        training = {it["file"] for it in self.data_index["training"] if it["file"]}
        self.soft_target_report = {
            "teacher_rows": len(soft_targets), "rows_used": len(matched),
            "training_clips": len(training), "training_clips_with_targets": len(
                training & set(matched)), "pseudo_clips": len(pseudo),
            "pseudo_clips_with_targets": len(pseudo & set(matched))}
        return table

    def _batch_fn(self, noise, augmentation, soft_table=None):
        import tensorflow as tf

        soft = None if soft_table is None else tf.constant(soft_table)
        bank = NoiseBank(noise)
        samples = tf.constant(bank.samples)
        mode = shift_mode(augmentation)

        def gather_and_draw(rows, seed, start, end):
            draws = augmentation_draws(len(rows), rows < 0, seed, bank, augmentation,
                                       scale=1 / 32767)
            return (self._audio[np.maximum(rows[start:end], 0)],
                    *(d[start:end] for d in draws))

        def load(batch, seed, part=None):
            rows, labels = batch
            start, end = (0, tf.shape(rows)[0]) if part is None else part
            clips, *draws = tf.numpy_function(
                gather_and_draw, [rows, seed, start, end],
                [tf.int16, tf.float32, tf.float32, tf.float32, tf.int32, tf.int32],
                stateful=False)
            clips = apply_augmentation(tf.ensure_shape(clips, [None, CLIP_SAMPLES]),
                                       *(tf.ensure_shape(d, [None]) for d in draws),
                                       samples, mode)
            rows, labels = rows[start:end], labels[start:end]
            if soft is None:
                return clips, labels
            targets = tf.gather(soft, tf.where(rows < 0, tf.shape(soft)[0] - 1, rows))
            return clips, tf.concat([tf.cast(labels, tf.float32)[:, None], targets], axis=1)

        return load

    def get_data(self, mode, how_many=-1, offset=0, augmentation=None, seed=0):
        """Numpy batch API: (audio float32 [n, 16000], labels int32 [n]) from a set's items.

        augmentation=None gives clean clips (eval noise in silence); pass an Augmentation to
        augment as in training.
        """
        self._decode_all()
        items = self.data_index[mode]
        items = items[offset:] if how_many < 0 else items[offset:offset + how_many]
        rows, labels = self._rows_and_labels(items)
        noise = self.noise_train if augmentation else self.noise_eval
        return self._augment(rows, seed, noise, augmentation), labels


def mix_with_pack(processor, train, val, front, pack, frequency, batch_size, seed,
                  train_on_validation=False, with_silence=False, shift_frames=10):
    """(training batches, validation batches, report) for model.pack_trainer: batches of
    ((audio, image features, from_audio), labels), `frequency` of the training batches drawn
    from the pack (pack_dataset, augmented as features), the others audio clips of `train`
    (their front end, the PackFeatures layer `front`, runs in the train step); `val` is audio.
    The speakers of the processor's testing set (and validation, unless train_on_validation)
    lose their pack images too. shift_frames: the images' time shift, as the audio's
    time_shift_ms."""
    import tensorflow as tf

    held_out = processor.speakers("testing") | (
        set() if train_on_validation else processor.speakers("validation"))
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

    mixed = tf.data.Dataset.sample_from_datasets(
        [train.map(from_audio), batches.map(from_pack)], [1 - frequency, frequency], seed=seed)
    report = {"images": len(images), "held_out_speakers": len(held_out)}
    return mixed.prefetch(tf.data.AUTOTUNE), val.map(from_audio), report


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
    from kws.frontend import FrontEnd, front_end_constants

    if not noise:
        return None
    front = FrontEnd(front_end_constants(layer))
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

    from kws.pack import GREY_CENTRE, GREY_OFFSET, GREY_SCALE, GREY_SPREAD, PACK_FRAMES

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


def replica_slices(batch, seed, first, count, total):
    """A dataset of `count` elements (batch, seed, (start, end)): the slices of a global batch
    that replicas first..first+count-1 of `total` take, in replica order."""
    import tensorflow as tf

    size = tf.shape(batch[0], out_type=tf.int64)[0]
    replica = tf.data.Dataset.range(first, first + count)
    return replica.map(lambda r: (batch, seed, (r * size // total, (r + 1) * size // total)))


def read_pseudo_sources(folder):
    """{`<label>/<file>`: fname it was cut from} of a pseudo pool ({} when it has no record)."""
    import csv

    path = os.path.join(folder, PSEUDO_SOURCES_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"file", "fname"} <= set(rows[0]):
        raise UserError(f"{path}: needs the columns file,fname")
    return {row["file"]: row["fname"] for row in rows}


def augment_batch(clips, generated_silence, seed, noise, augmentation=None, scale=1.0, part=None):
    """Scale, speed up or slow down, shift and add noise to a batch of clips [B, 16000] (int16
    rows of the cache become floats times `scale`): augmentation_draws, then
    apply_augmentation. Random draws come from `seed` alone, so a batch is the same whenever it
    is made. Silence clips made from noise (generated_silence) start from zeros and always get
    noise at U(0, silence_volume); with augmentation=None only they are touched (volume U(0,
    1)), which keeps evaluation repeatable.

    part=(start, end) makes rows start..end-1 only, exactly as they are in the whole batch (the
    draws are made for every row, the work for those rows alone): one replica's share of a
    global batch under tf.distribute.
    """
    bank = noise if isinstance(noise, NoiseBank) else NoiseBank(noise)
    first, stop = (0, len(clips)) if part is None else (int(part[0]), int(part[1]))
    draws = augmentation_draws(len(clips), generated_silence, seed, bank, augmentation, scale)
    mode = shift_mode(augmentation)
    return apply_augmentation(np.asarray(clips)[first:stop], *(d[first:stop] for d in draws),
                              bank.samples, mode).numpy()


def shift_mode(augmentation):
    """How an Augmentation shifts ("pad" without one: evaluation does not shift)."""
    return augmentation.time_shift_mode if augmentation is not None else "pad"


class NoiseBank:
    """Noise recordings end to end in one float32 array, so that a batch's noise is one gather
    (apply_augmentation); one shorter than a clip is repeated to a clip's length, as
    AudioProcessor loads them (XLA would clamp an index past its end into the next one); no
    recordings gives one silent clip that is never mixed in."""

    def __init__(self, recordings):
        recordings = [np.resize(np.asarray(r, np.float32), max(len(r), CLIP_SAMPLES))
                      for r in recordings if len(r)]
        self.lengths = np.array([len(r) for r in recordings], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.samples = (np.concatenate(recordings) if recordings
                        else np.zeros(CLIP_SAMPLES, np.float32))
        if len(self.samples) > np.iinfo(np.int32).max:
            raise UserError(f"{len(self.samples) / SAMPLE_RATE / 3600:.0f} hours of noise "
                            "recordings in all: at most 37 fit the augmentation's index")

    def __len__(self):
        return len(self.lengths)


def augmentation_draws(batch, generated_silence, seed, bank, augmentation=None, scale=1.0):
    """The random part of augment_batch, for every row of a batch, from `seed` alone: (gain,
    speed, noise volume) float32 [batch] and (shift, noise start in bank.samples) int32
    [batch]."""
    rng = np.random.default_rng([RANDOM_SEED, int(seed) & (2**63 - 1)])
    aug = augmentation
    generated_silence = np.asarray(generated_silence, bool)
    gain = np.full(batch, scale, np.float32)
    gain[generated_silence] = 0.0
    speed = np.ones(batch, np.float32)
    shifts = np.zeros(batch, np.int64)
    if aug is not None and aug.foreground_frequency > 0:
        draw = rng.uniform(aug.foreground_volume_min, aug.foreground_volume_max, batch)
        gain *= np.where(rng.random(batch) < aug.foreground_frequency, draw, 1.0)
    if aug is not None and aug.speed_frequency > 0:
        chosen = np.flatnonzero(rng.random(batch) < aug.speed_frequency)
        speed[chosen] = rng.uniform(aug.speed_min, aug.speed_max, len(chosen))
    if aug is not None and aug.time_shift_ms > 0 and aug.time_shift_frequency > 0:
        limit = int(SAMPLE_RATE * aug.time_shift_ms / 1000)
        shifts = rng.integers(-limit, limit + 1, batch)
        shifts[rng.random(batch) >= aug.time_shift_frequency] = 0
    volume = rng.uniform(0.0, 1.0 if aug is None else aug.silence_volume, batch)
    if aug is not None:
        speech = rng.uniform(0.0, aug.background_volume, batch)
        speech[rng.random(batch) >= aug.background_frequency] = 0.0
        volume = np.where(generated_silence, volume, speech)
    else:
        volume = np.where(generated_silence, volume, 0.0)
    which = rng.integers(0, max(len(bank), 1), batch)
    starts = rng.random(batch)
    if len(bank):
        room = bank.lengths[which] - CLIP_SAMPLES + 1
        start = bank.offsets[which] + (starts * room).astype(np.int64)
    else:
        start, volume = np.zeros(batch, np.int64), np.zeros(batch)
    return (gain, speed, volume.astype(np.float32), shifts.astype(np.int32),
            start.astype(np.int32))


def apply_augmentation(clips, gain, speed, volume, shift, noise_start, noise, mode="pad"):
    """The arithmetic of augment_batch, a tf.Tensor float32 [B, T] from clips [B, T] (int16 or
    float32) and one draw per row (augmentation_draws): row = clip(gain * speed_changed(clip)
    shifted by `shift` samples + volume * noise[noise_start:][:T], -1, 1). The speed change
    plays a clip `speed` times faster (pitch and tempo, as Kaldi's speed perturbation) about
    its centre by linear interpolation, zeros beyond its ends; the shift lets zeros in ("pad")
    or wraps ("roll"). One XLA-compiled TensorFlow function (a Python loop over rows cost twice
    the CPU, which on a small machine the train step waits for); it runs inside tf.data and
    eagerly alike."""
    if mode not in _APPLY_MODES:
        raise UserError(f"time_shift_mode must be pad or roll, not {mode!r}")
    return _compiled_apply(mode)(clips, gain, speed, volume, shift, noise_start, noise)


_APPLY_MODES = ("pad", "roll")
_COMPILED_APPLY = {}


def _compiled_apply(mode):
    import tensorflow as tf

    if mode in _COMPILED_APPLY:
        return _COMPILED_APPLY[mode]

    def apply(clips, gain, speed, volume, shift, noise_start, noise):
        x = tf.cast(clips, tf.float32)
        length = tf.shape(x)[1]
        k = tf.range(length)[None, :]
        source = k - shift[:, None]
        if mode == "roll":
            source = tf.math.floormod(source, length)
        inside = (source >= 0) & (source < length)
        centre = tf.cast(length, tf.float32) / 2
        position = (tf.cast(source, tf.float32) - centre) * speed[:, None] + centre
        below = tf.floor(position)
        weight = position - below
        last = length - 1
        j = tf.clip_by_value(tf.cast(below, tf.int32), 0, last)
        a = tf.gather(x, j, batch_dims=1)
        b = tf.gather(x, tf.minimum(j + 1, last), batch_dims=1)
        valid = inside & (position >= 0) & (position <= tf.cast(last, tf.float32))
        row = tf.where(valid, a + (b - a) * weight, 0.0) * gain[:, None]
        row += tf.gather(noise, noise_start[:, None] + k) * volume[:, None]
        return tf.clip_by_value(row, -1.0, 1.0)

    _COMPILED_APPLY[mode] = tf.function(apply, jit_compile=True, reduce_retracing=True)
    return _COMPILED_APPLY[mode]


def add_data_args(parser, data_dir_required=True):
    """The dataset flags train.py and friends share."""
    parser.add_argument("--data_dir", required=data_dir_required,
                        help="comma-separated data folders (Speech Commands, Kaggle train or "
                             "official test-set layout)")
    parser.add_argument("--wanted_words", default=",".join(COMPETITION_WORDS),
                        help="comma-separated words to recognise, or 'all' for every word folder")
    parser.add_argument("--silence_percentage", type=float, default=10.0,
                        help="silence clips as a percentage of the wanted-word clips of each set")
    parser.add_argument("--unknown_percentage", type=float, default=10.0,
                        help="unknown-word clips as a percentage of the wanted-word clips "
                             "(negative: all of them)")
    parser.add_argument("--validation_percentage", type=float, default=10.0,
                        help="speakers held out for validation when no lists are present")
    parser.add_argument("--testing_percentage", type=float, default=10.0,
                        help="speakers held out for testing when no lists are present")
    parser.add_argument("--split_salt", default="",
                        help="salt for the speaker hash: '' is the tutorial's split, any other "
                             "string draws another speaker-disjoint split")
    parser.add_argument("--train_only_dir", action="append", default=[],
                        help="extra data folder whose clips all train, minus held-out speakers "
                             "(synthetic speech, other corpora; repeatable)")
    parser.add_argument("--noise_dir", action="append", default=[],
                        help="extra folder of background noise WAVs (repeatable)")
    parser.add_argument("--balance_words", action=argparse.BooleanOptionalAction, default=None,
                        help="draw training epochs so that every wanted word is equally "
                             "frequent (corpora with uneven word counts)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable file instead of skipping it")
    return parser


def main(argv=None):
    parser = add_data_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--seed", type=int, default=RANDOM_SEED)
    args = parser.parse_args(argv)
    processor = AudioProcessor.from_settings(vars(args))
    print("label".ljust(12) + "".join(s.rjust(12) for s in SETS))
    counts = {s: processor.label_counts(s) for s in SETS}
    for label in processor.words_list:
        print(label.ljust(12) + "".join(str(counts[s][label]).rjust(12) for s in SETS))
    print("total".ljust(12) + "".join(str(processor.set_size(s)).rjust(12) for s in SETS))
    print("speakers".ljust(12) + "".join(str(len(processor.speakers(s))).rjust(12) for s in SETS))
    print(f"noise: {len(processor.noise_train)} recordings", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
