"""The library under the pipeline's scripts: each idea the scripts share lives here once.

No module here is run as a script; `labels` needs only numpy (it runs on a Pi).
"""
