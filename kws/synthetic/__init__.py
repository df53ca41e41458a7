"""The synthetic Speech Commands data set (make_synthetic_data.py is its command line).

make      the whole run: words and voices from the flags, the config, then every file
words     the default and unseen word lists; checks on a comma-separated list
espeak    espeak-ng through ctypes; its English voices and variants
piper     optional Piper voices (the piper-tts package)
speakers  synthetic speakers on a grid; seeded sampling of the training and test pools
render    an utterance -> a one-second 16 kHz clip (trim, room, EQ, level, noise)
jobs      one speaker's clips said in order; chunks of jobs in fresh processes
forking   the forked child processes that say them
plan      every file, its speaker and its seed
layout    the output folder: stamp, lists, answer key, README.md
"""
