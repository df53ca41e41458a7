"""The library under the pipeline's scripts: each idea the scripts share lives here once.

No module here is run as a script. `common` needs only the standard library and `labels` only
numpy, so the Pi script can use them; the clip format every module agrees on is below.
"""

SAMPLE_RATE = 16000   # Hz
CLIP_SAMPLES = 16000  # one second
