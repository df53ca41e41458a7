"""Training a keyword-spotting model (train.py is its command line).

config (flag choices, config files, flag checks), cluster (TF_CONFIG, each worker's folders),
budget (time budgets and the cosine schedule's rate), run_dir (what a run keeps in
checkpoints/<exp>/ and reads back to resume), plan (the run's folders, resume state and data,
before TensorFlow starts) stay light; distill (losses, teachers, soft targets), distributed
(tf.distribute strategies), callbacks (evaluation, budgets, schedules, checkpoints) and loop
(the model, its data and fit) are TensorFlow-backed. This file imports nothing.
"""
