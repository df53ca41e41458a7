"""The Raspberry Pi bundle: one archive to copy to the device (make pi-bundle).

    path = build_bundle(["models/edge_int8.tflite"], "dist")   # dist/kws-pi-<version>.tar.gz

The archive holds one folder, kws-pi-<version>/: the Pi script and label_stream.py, the kws
modules they import (found by reading their imports, so a new dependency is bundled without a
list to keep), the model(s) with their labels, streaming settings and stream body, the pinned
runtime (requirements-pi.txt: versions that exist as Linux aarch64 wheels;
requirements-pi-armv7.txt for the 32-bit OS), a README and a systemd unit. No bundled module
imports TensorFlow, scipy or pandas at module level (checked here); kws.runtime imports
TensorFlow only for a .pb, which a bundle never holds. The archive is reproducible: sorted
members, fixed times and owners.

pinned_venv() makes (once, cached under ~/.cache/kws-pi) an x86 virtual env with exactly a
requirements file: what the tests and the ARM check run the unpacked bundle in on x86.
Standard library and the Pi-light kws modules (runtime, streaming) only.
"""

import ast
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tomllib

from kws.common import REPO, UserError, atomic_path
from kws.runtime import labels_path_for, load_model, stream_files_for
from kws.streaming import load_settings, settings_path

SCRIPTS = ("make_submission_on_rpi.py", "label_stream.py")
REQUIREMENTS = "requirements-pi.txt"  # 64-bit Raspberry Pi OS (aarch64): ai-edge-litert
REQUIREMENTS_ARMV7 = "requirements-pi-armv7.txt"  # 32-bit (armv7l): tflite-runtime, apt numpy
PINS = os.path.join(REPO, REQUIREMENTS)
TEMPLATES = os.path.join(REPO, "docs", "pi")  # the bundle's README and systemd unit
SERVICE = "kws-spotter.service"
# Never imported at module level by a bundled module: the Pi has none of them
HEAVY = ("tensorflow", "keras", "scipy", "pandas", "matplotlib", "librosa", "ray", "soxr",
         "model", "train", "input_data")
# Reached only through kws.runtime's loader of .keras checkpoints, which a bundle never holds:
# Keras itself, so not bundled
KERAS_ONLY = ("kws.checkpoint",)
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                     "kws-pi")
ARCHIVE_MTIME = 315532800  # 1980-01-01: members' time, so equal inputs give equal archives


def project_version(repo=REPO):
    """[project] version of pyproject.toml."""
    with open(os.path.join(repo, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["version"]


def bundle_name(version):
    return f"kws-pi-{version}"


def imported_kws_modules(path):
    """kws modules a file imports anywhere in it (module level or inside functions)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "kws")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "kws":
                found.add("kws")
                found.update(f"kws.{a.name}" for a in node.names)
            elif node.module.startswith("kws."):
                found.add(node.module)
    return found


def module_path(repo, module):
    parts = module.split(".")
    package = os.path.join(repo, *parts, "__init__.py")
    return package if os.path.isfile(package) else os.path.join(repo, *parts) + ".py"


def kws_closure(repo=REPO, scripts=SCRIPTS):
    """Relative paths of every kws module the scripts need, following imports transitively
    (kws/__init__.py included). A name imported from kws that is not a module (`from kws
    import SAMPLE_RATE`) is skipped."""
    todo = [os.path.join(repo, s) for s in scripts]
    seen, modules = set(), {"kws"}
    while todo:
        for module in imported_kws_modules(todo.pop()):
            path = module_path(repo, module)
            if module not in seen and module not in KERAS_ONLY and os.path.isfile(path):
                seen.add(module)
                modules.add(module)
                todo.append(path)
    return sorted(os.path.relpath(module_path(repo, m), repo) for m in modules)


def module_level_imports(path):
    """Top-level package names a file imports at module level (not inside functions)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def check_light(repo, relpaths):
    for rel in relpaths:
        heavy = sorted(module_level_imports(os.path.join(repo, rel)) & set(HEAVY))
        if heavy:
            raise UserError(f"{rel} imports {', '.join(heavy)} at module level: it cannot run "
                            "on the Pi bundle's runtime (move the import into the function "
                            "that needs it)")


def model_files(model_path):
    """{name in the bundle's models/: source path} for a .tflite: the model, its labels, and,
    where they exist beside it, its stream body + front end and its streaming settings."""
    if not os.path.isfile(model_path):
        raise UserError(f"model not found: {model_path}")
    if not model_path.lower().endswith(".tflite"):
        raise UserError(f"{model_path}: the Pi bundle takes .tflite models (freeze_graph.py "
                        "writes NAME_int8.tflite)")
    files = {os.path.basename(model_path): model_path}
    labels = labels_path_for(model_path)
    if os.path.basename(labels) == "labels.txt":  # shared by a folder: name it for the model
        stem = os.path.splitext(os.path.basename(model_path))[0].removesuffix("_int8")
        files[f"{stem}_labels.txt"] = labels
    else:
        files[os.path.basename(labels)] = labels
    body, front_end = stream_files_for(model_path)
    if os.path.isfile(body) and os.path.isfile(front_end):
        files[os.path.basename(body)] = body
        files[os.path.basename(front_end)] = front_end
    settings = settings_path(model_path)
    if os.path.isfile(settings):
        try:  # read as label_stream.py will on the Pi: a bad file stops the bundle here
            load_settings(model_path)
        except UserError as e:
            message = str(e)
            raise UserError(message if settings in message else f"{settings}: {message}") \
                from None
        files[os.path.basename(settings)] = settings
    return files


def check_model(model_path):
    """Load the model as the Pi will (its labels must match its outputs), with this machine's
    LiteRT: a broken or mislabelled model stops the bundle here, not on the device."""
    load_model(model_path)


def check_pinned_runtimes(models, repo=REPO):
    """Load every model with each runtime the bundle pins (in their x86 venvs, built once): a
    model frozen for a newer runtime than the oldest pinned one stops the bundle here, with the
    runtime's one-line error, instead of on the Pi. Returns {lock: runtime version}."""
    code = ("import sys; from kws.runtime import load_model, tflite_interpreter, "
            "runtime_version\nfor path in sys.argv[1:]:\n    load_model(path)\n"
            "name = tflite_interpreter()[0]\nprint(name, runtime_version(name))")
    found = {}
    for lock in (REQUIREMENTS, REQUIREMENTS_ARMV7):
        python = pinned_venv(os.path.join(repo, lock))
        done = subprocess.run([python, "-c", code, *map(os.path.abspath, models)],
                              capture_output=True, text=True, cwd=os.path.dirname(python),
                              env={**os.environ, "PYTHONPATH": repo, "PYTHONNOUSERSITE": "1"})
        if done.returncode:
            last = (done.stderr.strip() or "?").splitlines()[-1]
            raise UserError(f"a model does not load with {lock}'s runtime: "
                            f"{last.removeprefix('kws.common.UserError: ')}")
        found[lock] = done.stdout.strip().splitlines()[-1]
    return found


def read_template(name):
    with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
        return f.read()


def fill(template, **values):
    for key, value in values.items():
        template = template.replace(f"@{key.upper()}@", value)
    return template


def bundle_members(models, repo=REPO, version=None):
    """{path inside the bundle folder: bytes}."""
    version = version or project_version(repo)
    modules = kws_closure(repo)
    check_light(repo, modules)
    members = {}
    for rel in (*SCRIPTS, *modules, REQUIREMENTS, REQUIREMENTS_ARMV7):
        with open(os.path.join(repo, rel), "rb") as f:
            members[rel] = f.read()
    names = []
    for model in models:
        check_model(model)
        for name, source in model_files(model).items():
            if f"models/{name}" in members:
                raise UserError(f"two models give the bundle the same file {name}")
            with open(source, "rb") as f:
                members[f"models/{name}"] = f.read()
        names.append(os.path.basename(model))
    main = f"models/{names[0]}"
    listed = "\n".join(f"- `models/{n}`" for n in names)
    folder = bundle_name(version)
    members["README.md"] = fill(read_template("README.md"), version=version, model=main,
                                models=listed, folder=folder).encode()
    members[SERVICE] = fill(read_template(SERVICE), version=version, model=main,
                            folder=folder).encode()
    members["bundle.json"] = (json.dumps({
        "name": folder, "version": version, "models": [f"models/{n}" for n in names],
        "runtime": {"aarch64": pinned(os.path.join(repo, REQUIREMENTS)),
                    "armv7l": pinned(os.path.join(repo, REQUIREMENTS_ARMV7))},
        "files": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(members.items())},
    }, indent=1) + "\n").encode()
    return members


def pinned(requirements):
    """{package: version} of a lock file's name==version lines."""
    pins = {}
    with open(requirements, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[name.strip()] = version.strip()
    return pins


def write_archive(path, folder, members):
    """A .tar.gz of members under folder/, reproducible (sorted, fixed mtime, root owner)."""
    with atomic_path(path, suffix=".tar.gz") as tmp:
        with open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            directories = sorted({os.path.dirname(f"{folder}/{name}") for name in members}
                                 | {folder})
            for directory in directories:
                info = tarfile.TarInfo(directory)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, ARCHIVE_MTIME
                tar.addfile(info)
            for name in sorted(members):
                data = members[name]
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size, info.mtime = len(data), ARCHIVE_MTIME
                info.mode = 0o755 if name in SCRIPTS else 0o644
                tar.addfile(info, io.BytesIO(data))
    return path


def build_bundle(models, out_dir="dist", repo=REPO, version=None):
    """Write out_dir/kws-pi-<version>.tar.gz; returns its path."""
    version = version or project_version(repo)
    if not models:
        raise UserError("no model to bundle")
    members = bundle_members(models, repo, version)
    folder = bundle_name(version)
    return write_archive(os.path.join(out_dir, f"{folder}.tar.gz"), folder, members)


def unpack(archive, target):
    """Extract a bundle into target; returns the bundle folder inside it."""
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
        top = {m.name.split("/")[0] for m in tar.getmembers()}
    if len(top) != 1:
        raise UserError(f"{archive}: not a bundle (expected one top folder, got {sorted(top)})")
    return os.path.join(target, top.pop())


# ---- the pinned runtime on this machine ---------------------------------------------------------
def requirements_key(requirements, *extra):
    h = hashlib.sha256()
    with open(requirements, "rb") as f:
        h.update(f.read())
    for item in extra:
        h.update(str(item).encode())
    return h.hexdigest()[:12]


def pypi_reachable(timeout=5.0):
    """Whether the package index answers (pip's configured index: pypi.org by default)."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def pinned_venv(requirements=PINS, cache=CACHE, python=None):
    """The python of a virtual env holding exactly `requirements` (no TensorFlow), made once
    under cache and reused while the requirements are unchanged."""
    python = python or sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    final = os.path.join(cache, f"venv-py{version}-{requirements_key(requirements, version)}")
    exe = os.path.join(final, "bin", "python")
    if os.path.isfile(os.path.join(final, ".complete")):
        return exe
    os.makedirs(cache, exist_ok=True)
    building = f"{final}.part-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        subprocess.run([python, "-m", "venv", building], check=True, capture_output=True)
        pip = subprocess.run([os.path.join(building, "bin", "python"), "-m", "pip", "install",
                              "--quiet", "--only-binary=:all:", "-r", requirements],
                             capture_output=True, text=True)
        if pip.returncode:
            tail = (pip.stderr.strip().splitlines() or ["?"])[-1]
            raise UserError(f"cannot install {requirements} into a venv: {tail}")
        with open(os.path.join(building, ".complete"), "w") as f:
            f.write(requirements_key(requirements, version) + "\n")
        try:
            os.rename(building, final)  # a venv's bin/python finds its env through pyvenv.cfg
        except OSError:  # another process finished first
            if not os.path.isfile(os.path.join(final, ".complete")):
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return exe
