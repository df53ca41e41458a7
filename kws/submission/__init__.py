"""Labelling clip folders with a trained model (make_submission.py's engine).

tta       test-time variants of a batch of clips (shift, gain, stretch)
inputs    the clips to label (a folder or a list of paths/URIs) and the Ray check
chunks    resumable chunked labelling: manifest, saved chunks, the local runner
predictor the Keras model as a batched probability function (TensorFlow)
ray_runner the same map step on Ray Data actors
report    submission labels, unreadable clips, accuracy and the confusion matrix
run       the whole command: label, write the CSV and probability files, score, benchmark
"""
