"""Does augmentation keep up with training? (benchmark.py --pipeline): the train step of a
~200k-parameter model on cached batches against the same step fed live, for two augmentation
sets (and the pack recipe's mix), and the pipeline alone, all in one process.

    figures = pipeline_benchmark("data/speech_commands", steps=60, rounds=5)
"""

import time

import numpy as np
import tensorflow as tf

from kws.augment import Augmentation
from kws.bench import memory_kb
from kws.common import UserError, machine_description
from kws.data import AudioProcessor
from kws.layers import PackFeatures, front_end_layer, pack_trainer
from kws.pack import open_pack, parse_name, read_pack
from kws.pack_data import mix_with_pack, noise_images, pack_dataset, pack_examples
from kws.zoo import build_model


class StepTimer:
    """Times train steps and input pipelines over `steps` batches, `rounds` times."""

    def __init__(self, steps, rounds, batch_size):
        self.steps, self.rounds, self.batch_size = steps, rounds, batch_size
        self.compiled = {}

    def per_batch(self, run, repeats=2):
        """Seconds per batch, the best of `repeats` timings (a timing can catch a retrace)."""
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = min(best, (time.perf_counter() - start) / self.steps)
        return best

    def pipeline_alone(self, dataset):
        """Seconds per batch of the pipeline with no step."""
        return self.per_batch(lambda: [None for _ in dataset.take(self.steps)])

    def blocked(self, model, dataset):
        """The share of a step spent blocked on the next batch, timed around each step."""
        if id(model) not in self.compiled:
            self.compiled[id(model)] = tf.function(model.train_step,
                                                   jit_compile=model.jit_compile)
        train_step = self.compiled[id(model)]
        batches = iter(dataset)
        train_step(next(batches))
        waiting = total = 0.0
        for _ in range(self.steps):
            start = time.perf_counter()
            batch = next(batches)
            got = time.perf_counter()
            float(train_step(batch)["loss"])
            waiting, total = waiting + got - start, total + time.perf_counter() - start
        return waiting / total

    def fit_time(self, model, dataset):
        return self.per_batch(lambda: model.fit(dataset, steps_per_epoch=self.steps, epochs=1,
                                                verbose=0))

    def alternate(self, model, cached, live):
        """The input wait, two ways, medians of `rounds` rounds of the cached and the live step
        alternating (a shared machine's speed drifts between two timings minutes apart):
        `input_wait`, the share of a step blocked on the next batch (as TF's profiler counts
        it), over a cached batch's; and `input_cost`, the live step's time over the cached
        step's, which counts the pipeline's CPU taken from the step's threads too."""
        timed = []
        for _ in range(self.rounds):
            step, fed = self.fit_time(model, cached), self.fit_time(model, live)
            wait = max(self.blocked(model, live) - self.blocked(model, cached), 0.0)
            timed.append((step, fed, max(fed - step, 0) / fed, wait))
        step, fed, cost, wait = (float(np.median(column)) for column in zip(*timed))
        return {"step_cached_ms": step * 1e3, "step_live_ms": fed * 1e3,
                "examples_per_second_live": self.batch_size / fed, "input_wait": wait,
                "input_wait_rounds": [t[3] for t in timed], "input_cost": cost,
                "input_cost_rounds": [t[2] for t in timed]}


AUGMENTATIONS = {  # the audio pipelines timed, by name
    "noise + gain + shift (the entry's)": dict(foreground_frequency=0.5),
    "... + speed on half the clips": dict(foreground_frequency=0.5, speed_frequency=0.5)}


def pipeline_benchmark(data_dir, steps, batch_size=64, pack="", rounds=5):
    """The figures, as a dict for --json: the audio pipelines of AUGMENTATIONS against the
    train step of edge_tcs width 1.9 (and, with `pack`, the pack recipe's mix)."""
    if steps < 1 or rounds < 1:
        raise UserError("--pipeline_steps and --pipeline_rounds must be >= 1")
    if pack:  # before minutes of audio figures: the pack is opened only at the end
        with open_pack(pack) as archive:
            if not any(map(parse_name, archive.namelist())):
                raise UserError(f"{pack}: no spectrogram images inside")
    processor = AudioProcessor.from_settings({"data_dir": data_dir, "silence_percentage": 10,
                                              "unknown_percentage": 60})
    net = build_model("edge_tcs", len(processor.words_list), width=1.9, spec_augment=True)
    net.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    timer = StepTimer(steps, rounds, batch_size)
    cached = processor.dataset("training", batch_size).take(1).cache().repeat()
    net.fit(cached, steps_per_epoch=5, epochs=1, verbose=0)
    figures = {"machine": machine_description(), "batch_size": batch_size, "steps": steps,
               "rounds": rounds, "audio": {}}
    print(f"{figures['machine']}; batch {batch_size}, {steps} batches per phase, {rounds} "
          f"rounds; edge_tcs width 1.9 ({net.count_params():,} parameters, SpecAugment in "
          "the model)")
    for name, options in AUGMENTATIONS.items():
        live = processor.dataset("training", batch_size, Augmentation(**options))
        net.fit(live, steps_per_epoch=5, epochs=1, verbose=0)  # warm up (and trace) first
        alone = timer.pipeline_alone(live)
        result = {"pipeline_alone_ms": alone * 1e3, **timer.alternate(net, cached, live)}
        figures["audio"][name] = result
        print(f"{name}: pipeline alone {alone * 1e3:.1f} ms/batch ({batch_size / alone:,.0f} "
              f"clips/s); train step on a cached batch {result['step_cached_ms']:.1f} ms, fed "
              f"live {result['step_live_ms']:.1f} ms; " + wait_text(result))
    if pack:
        figures["pack"] = pack_pipeline_benchmark(processor, pack, timer)
    return figures


def wait_text(result):
    def rounds(key):
        return ", ".join(f"{w:.1%}" for w in result[f"{key}_rounds"])

    return (f"input wait {result['input_wait']:.1%} of a step (blocked on the next batch; "
            f"rounds {rounds('input_wait')}), input cost {result['input_cost']:.1%} (the live "
            f"step over the cached one; rounds {rounds('input_cost')})")


def pack_pipeline_benchmark(processor, pack_path, timer):
    """The pack recipe's input: audio clips mixed half and half with augmented pack images,
    against the train step of pack_trainer (the audio's front end runs in the step)."""
    rss_before = memory_kb("VmRSS")
    batch_size = timer.batch_size
    pack = read_pack(pack_path, "data/pack")
    net = build_model("edge_tcs", len(processor.words_list), width=2.0, spec_augment=True,
                      features="pack", time_pool=2)
    front = front_end_layer(net, PackFeatures)
    body = pack_trainer(net)
    body.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    audio = processor.dataset("training", batch_size, Augmentation(foreground_frequency=0.5,
                                                                   speed_frequency=0.5))
    mixed, _, report = mix_with_pack(processor, audio, audio, front, pack, 0.5, batch_size, 0)
    cached = mixed.take(16).cache().repeat()  # audio and pack batches, as the live mix has them
    body.fit(cached, steps_per_epoch=16, epochs=1, verbose=0)
    body.fit(mixed, steps_per_epoch=5, epochs=1, verbose=0)
    result = timer.alternate(body, cached, mixed)
    alone = timer.pipeline_alone(mixed)
    images = pack_dataset(*pack_examples(pack, processor.words_list), batch_size, 0,
                          noise_images(processor.noise_train, front))
    branches = {name: timer.pipeline_alone(ds) * 1e3
                for name, ds in (("audio clips", audio), ("pack images", images))}
    rss = memory_kb("VmRSS")
    result.update({"images": report["images"], "pipeline_alone_ms": alone * 1e3,
                   "branches_alone_ms": branches, "resident_mb": rss / 1024,
                   "pack_added_mb": (rss - rss_before) / 1024,
                   "peak_mb": memory_kb("VmHWM") / 1024})
    print_pack(result, alone, batch_size, branches)
    return result


def print_pack(result, alone, batch_size, branches):
    print(f"pack (edge_tcs width 2 on PackFeatures, {result['images']:,} images, half the "
          f"batches, the audio's front end in the step): train step on a cached batch "
          f"{result['step_cached_ms']:.1f} ms; pipeline alone "
          f"{alone * 1e3:.1f} ms/batch ({batch_size / alone:,.0f} examples/s: "
          + ", ".join(f"{name} {t:.1f} ms" for name, t in branches.items())
          + f"); step fed live {result['step_live_ms']:.1f} ms "
          f"({result['examples_per_second_live']:,.0f} examples/s); " + wait_text(result)
          + f"; resident memory {result['resident_mb']:,.0f} MB (the pack and its pipeline "
          f"added {result['pack_added_mb']:,.0f} MB), peak {result['peak_mb']:,.0f} MB")
