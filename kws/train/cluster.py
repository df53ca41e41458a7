"""Several workers: the TF_CONFIG cluster, checked, and the folders each worker writes to.
Standard library only: train.py checks TF_CONFIG before TensorFlow starts."""

import contextlib
import json
import os
import shutil
import tempfile

from kws.common import UserError

CLUSTER_ROLES = ("chief", "worker")
TF_CONFIG_EXAMPLE = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


def parse_tf_config(text):
    """TF_CONFIG, checked: {task_type, task_index, workers, is_chief}, or a one-line UserError.

    The cluster holds "worker" (and optionally one "chief") lists of host:port; the task names
    this process's role and index. The chief (or worker 0 without one) writes the run's files.
    """
    config = read_tf_config_json(text)
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    check_cluster(cluster)
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise UserError(f"TF_CONFIG task.type must be one of {sorted(cluster)}, got "
                        f"{task.get('type') if isinstance(task, dict) else task!r}")
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or \
            not 0 <= index < len(cluster[task["type"]]):
        raise UserError(f"TF_CONFIG task.index must be 0..{len(cluster[task['type']]) - 1} for "
                        f"{task['type']}, got {index!r}")
    is_chief = task["type"] == "chief" or ("chief" not in cluster and index == 0)
    return {"task_type": task["type"], "task_index": index, "is_chief": is_chief,
            "workers": sum(len(v) for v in cluster.values())}


def read_tf_config_json(text):
    if not text or not text.strip():
        raise UserError(f"--strategy multi_worker needs the TF_CONFIG environment variable, "
                        f"{TF_CONFIG_EXAMPLE}")
    try:
        return json.loads(text)
    except ValueError as e:
        raise UserError(f"TF_CONFIG is not JSON ({e}), {TF_CONFIG_EXAMPLE}") from None


def check_cluster(cluster):
    """Chief and worker roles only, each a non-empty list of distinct host:port, one chief."""
    if not isinstance(cluster, dict) or not cluster:
        raise UserError(f"TF_CONFIG needs a \"cluster\" object, {TF_CONFIG_EXAMPLE}")
    unknown = sorted(set(cluster) - set(CLUSTER_ROLES))
    if unknown:
        raise UserError(f"TF_CONFIG cluster: roles {unknown} are not supported (only chief and "
                        "worker: MultiWorkerMirroredStrategy has no parameter servers)")
    seen = set()
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise UserError(f"TF_CONFIG cluster.{role} must be a non-empty list of host:port")
        for address in addresses:
            host, _, port = address.rpartition(":") if isinstance(address, str) else ("",) * 3
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise UserError(f"TF_CONFIG cluster.{role}: {address!r} is not host:port")
            if address in seen:
                raise UserError(f"TF_CONFIG cluster: {address} is listed twice")
            seen.add(address)
    if len(cluster.get("chief", [])) > 1:
        raise UserError("TF_CONFIG cluster: at most one chief")


@contextlib.contextmanager
def worker_dirs(exp_dir, log_dir, is_chief):
    """Where this process writes: the run's folders for the chief; for another worker, a
    temporary folder removed at the end (Keras' multi-worker pattern: every worker saves, so
    that all take part in the same steps, but only the chief's files are kept)."""
    if is_chief:
        yield exp_dir, log_dir
        return
    scratch = tempfile.mkdtemp(prefix="kws-worker-")
    try:
        yield os.path.join(scratch, "checkpoints"), os.path.join(scratch, "logs")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
