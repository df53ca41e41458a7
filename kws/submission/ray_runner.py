"""make_submission's map step (decode a chunk, label it) on Ray Data actors, on this machine or a
Ray cluster; the driver saves and writes the chunks as the local runner does. Ray itself is an
optional dependency, imported by kws.submission.inputs.import_ray."""

import logging
import os
import shutil
import tempfile

import numpy as np

from kws.common import REPO
from kws.submission.chunks import chunk_probabilities, decode_chunk
from kws.submission.inputs import import_ray
from kws.submission.predictor import configure_threads, load_model, make_predictor


class ChunkLabeller:
    """A Ray Data actor: loads the model once, then labels whole chunks (decode + model, the
    functions the single-process runner uses) given as rows {chunk, paths}."""

    def __init__(self, checkpoint_ref, variants, batch_size, num_labels, threads):
        ray = import_ray()
        configure_threads(threads)
        files = ray.get(checkpoint_ref[0])  # a reference in a list: fetched here, by the actor
        folder = tempfile.mkdtemp(prefix="kws-labeller-")
        try:
            for name, data in files.items():
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(data)
            keras_model, _ = load_model(os.path.join(folder, "model.keras"))
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the model is in memory now
        self.predict = make_predictor(keras_model)
        self.variants, self.batch_size, self.num_labels = variants, batch_size, num_labels
        self.threads = threads or None

    def __call__(self, batch):
        out = {"chunk": [], "probs": [], "ok": [], "errors": []}
        for chunk, paths in zip(batch["chunk"], batch["paths"]):
            errors = []
            clips, kept = decode_chunk([str(p) for p in paths], self.threads, errors)
            probs, ok = chunk_probabilities(self.predict, clips, kept, len(paths),
                                            self.num_labels, self.variants, self.batch_size)
            out["chunk"].append(int(chunk))
            out["probs"].append(probs.tobytes())
            out["ok"].append(ok.tobytes())
            out["errors"].append("\n".join(str(e) for e in errors))
        return {"chunk": np.array(out["chunk"], np.int64),
                **{k: np.array(out[k], dtype=object) for k in ("probs", "ok", "errors")}}


class RayRunner:
    """The map step on Ray Data: one row per chunk, `map_batches` over a pool of ChunkLabeller
    actors (on this machine, or on the cluster that --ray_address names), results streamed back
    to this process, which saves and writes them as the local runner does."""

    def __init__(self, checkpoint, paths, variants, batch_size, num_labels, address="local",
                 workers=0, threads=1):
        self.ray = import_ray()
        self.paths, self.num_labels = paths, num_labels
        self.variants, self.batch_size, self.threads = variants, batch_size, threads
        self.started = not self.ray.is_initialized()
        if self.started:
            python_path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
            runtime_env = {"env_vars": {"PYTHONPATH": python_path, "TF_CPP_MIN_LOG_LEVEL": "3"}}
            if address != "local":  # a cluster: ship this repository's code to its workers
                runtime_env = {"working_dir": REPO, "excludes": [
                    ".venv", ".git", "data", "checkpoints", "tf_files", "logs"],
                    "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}}
            self.ray.init(address=None if address == "local" else address,
                          runtime_env=runtime_env, include_dashboard=False,
                          log_to_driver=False, logging_level=logging.ERROR,
                          num_cpus=(workers or None) if address == "local" else None)
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        context = self.ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(cpus // max(threads, 1), 1)
        folder = os.path.dirname(os.path.abspath(checkpoint))
        with open(checkpoint, "rb") as f, open(os.path.join(folder, "labels.txt"), "rb") as g:
            self.model_ref = self.ray.put({"model.keras": f.read(), "labels.txt": g.read()})

    def __call__(self, todo):
        if not todo:
            return
        rows = [{"chunk": c, "paths": self.paths[start:end]} for c, start, end in todo]
        ds = self.ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(ChunkLabeller, batch_size=1, batch_format="numpy",
                            fn_constructor_args=([self.model_ref], self.variants,
                                                 self.batch_size, self.num_labels, self.threads),
                            compute=self.ray.data.ActorPoolStrategy(
                                size=min(self.workers, len(rows))),
                            num_cpus=self.threads)
        sizes = {c: end - start for c, start, end in todo}
        for row in ds.iter_rows():
            c = int(row["chunk"])
            probs = np.frombuffer(row["probs"], np.float32).reshape(sizes[c], self.num_labels)
            ok = np.frombuffer(row["ok"], bool)
            errors = row["errors"].split("\n") if row["errors"] else []
            yield c, probs.copy(), ok.copy(), errors

    def close(self):
        if self.started:
            self.ray.shutdown()
