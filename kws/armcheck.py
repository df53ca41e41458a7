"""The Pi bundle on ARM Linux under emulation, on an x86 machine (make arm-check).

    arch = ARCHES["arm64"]                   # or "armhf": 32-bit Raspberry Pi OS
    userland = debian_userland(cache, arch)  # Debian bookworm python3.11 + qemu-user
    site = wheel_site(cache, "requirements-pi.txt", arch)   # the pinned ARM wheels, unpacked
    command, env = arm_python(userland, site, arch)         # the ARM python3.11 under qemu

Nothing here needs root or binfmt_misc: Debian's arm64 (or armhf) packages are fetched with
apt-get through a private configuration (its own lists, cache and empty dpkg status under the
cache folder: the host's apt setup is not touched) and unpacked with `dpkg -x`; Debian trixie's
statically linked qemu-user (10.0; also unpacked, not installed) runs the ARM python with
`-L rootfs` on the
oldest core the bundle targets (a Cortex-A53, the Pi 3's; a Cortex-A7 for 32-bit); the wheels
are pip's ARM downloads installed into a folder with `pip install --target --platform`. A pin
marked `# apt: PACKAGE` in the requirements (numpy and cffi on 32-bit ARM, where PyPI has no
wheel) comes from Debian's package instead. Everything is cached under ~/.cache/kws-arm
(KWS_ARM_CACHE), keyed by what it depends on, so a second run needs no network.

compare_probabilities / compare_detections decide the check: labels equal and probabilities
within int8 rounding of the x86 run's.
"""

import csv
import dataclasses
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from kws.common import UserError
from kws.runtime import KERNELS_ENV, load_model

CACHE = os.environ.get("KWS_ARM_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kws-arm")
SUITE = "bookworm"  # Raspberry Pi OS is bookworm: python3.11, glibc 2.36
MIRRORS = (f"http://deb.debian.org/debian {SUITE} main",
           f"http://deb.debian.org/debian-security {SUITE}-security main")
# lists a userland is made without when a mirror cannot serve them (e.g. one caught mid-sync):
# bookworm's own packages run the check as well as their security updates do
OPTIONAL_MIRRORS = MIRRORS[1:]
FAILED_FETCH = re.compile(r"^[EW]: Failed to fetch (\S+)\s*(.*)$", re.M)
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# The emulator comes from Debian trixie, whose qemu-user (10.0) is statically linked:
# bookworm's qemu-user-static 7.2 crashes (SIGSEGV) inside ai-edge-litert 2.3.0's interpreter
# creation on every CPU model, which 10.0 runs
QEMU_SUITE = "trixie"
QEMU_PACKAGE = "qemu-user"
USERLAND_VERSION = 3  # raised when how the userland is made changes: a new cache folder
GLIBC_MINOR = 36  # bookworm's glibc: the manylinux tags it runs
PYTHON_VERSION = "3.11"
APT_PIN = re.compile(r"#\s*apt:\s*(\S+)")
# One output step of an int8 model whose softmax is quantized to 1/256: the agreement asked of
# two runtimes' probabilities ("within int8 rounding")
INT8_STEP = 1 / 256


@dataclasses.dataclass(frozen=True)
class Arch:
    name: str            # Debian's architecture
    machine: str         # uname -m, and the wheels' platform suffix
    qemu: str            # the emulator in qemu-user
    cpu: str             # the core qemu emulates: the oldest the bundle targets
    packages: tuple      # Debian packages of the userland (apt adds their dependencies)
    requirements: str    # the bundle's lock for this architecture
    # another runtime on x86: with both runtimes' kernel sets it measures how far int8 kernels
    # that round differently move the model, which bounds the ARM run (None: the ARM run must
    # agree within int8 rounding itself); see kws.armrun.compare_with_reference
    reference: str = None

    def wheel_platforms(self):
        legacy = ["linux_armv7l", "manylinux2014_armv7l"] if self.machine == "armv7l" \
            else ["manylinux2014_aarch64"]
        return legacy + [f"manylinux_2_{m}_{self.machine}" for m in range(17, GLIBC_MINOR + 1)]


ARCHES = {
    "arm64": Arch("arm64", "aarch64", "qemu-aarch64", "cortex-a53",
                  ("python3.11", "libstdc++6"), "requirements-pi.txt"),
    "armhf": Arch("armhf", "armv7l", "qemu-arm", "cortex-a7",
                  ("python3.11", "libstdc++6", "python3-numpy", "python3-cffi", "libsndfile1"),
                  "requirements-pi-armv7.txt", reference="requirements-pi.txt"),
}


def wheel_platforms(arch="arm64"):
    return ARCHES[arch].wheel_platforms()


def key_of(*items):
    h = hashlib.sha256()
    for item in items:
        h.update(repr(item).encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def file_key(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def run(cmd, what, check=True, **kwargs):
    """subprocess.run that turns a failure into one UserError line naming `what` (check=False:
    the caller reads the failure)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as e:
        raise UserError(f"{what}: {e.filename} not found") from None
    if done.returncode and check:
        raise UserError(f"{what} failed: {last_line(done)}")
    return done


def last_line(done):
    """The last line a finished process wrote (stderr first), for a one-line error."""
    return (done.stderr.strip() or done.stdout.strip() or "?").splitlines()[-1][:300]


def apt_options(apt_dir, architecture):
    """apt-get options for a private configuration of one Debian architecture in apt_dir."""
    return ["-o", f"APT::Architecture={architecture}",
            "-o", f"APT::Architectures::={architecture}",
            "-o", f"Dir::State::Lists={apt_dir}/lists",
            "-o", f"Dir::State::status={apt_dir}/status",
            "-o", f"Dir::Cache={apt_dir}/cache",
            "-o", f"Dir::Etc::SourceList={apt_dir}/sources.list",
            "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", "Dir::Etc::Preferences=/nonexistent",
            "-o", f"Dir::Etc::PreferencesParts={apt_dir}/preferences.d",
            "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root", "-q"]


def private_apt(apt_dir, architecture, sources, optional=()):
    """A private apt configuration in apt_dir with these source lines, its lists fetched;
    returns its apt-get options. A source in `optional` whose lists cannot be fetched is left
    out with a warning; any other failure is an error."""
    for sub in ("lists/partial", "cache/archives/partial", "preferences.d", "download"):
        os.makedirs(os.path.join(apt_dir, sub), exist_ok=True)
    open(os.path.join(apt_dir, "status"), "w").close()  # nothing installed: fetch every dep
    with open(os.path.join(apt_dir, "sources.list"), "w") as f:
        f.writelines(f"deb [arch={architecture} signed-by={KEYRING}] {s}\n" for s in sources)
    options = apt_options(apt_dir, architecture)
    what = f"apt-get update (Debian's {architecture} lists)"
    done = run(["apt-get", *options, "update"], what, check=False)
    if done.returncode:
        failed = unfetched_sources(done.stdout + "\n" + done.stderr, sources)
        if not failed or not set(failed) <= set(optional):
            raise UserError(f"{what} failed: {last_line(done)}")
        for source, reason in failed.items():
            print(f"warning: {what}: left out {source}, whose lists the mirror did not serve "
                  f"({reason[:160]})", file=sys.stderr)
    return options


def unfetched_sources(output, sources):
    """{source line: apt's reason} for each source whose lists apt-get update's output says
    it failed to fetch; {} when no failure names one of them (then the failure is unknown)."""
    failed = {}
    for url, reason in FAILED_FETCH.findall(output):
        source = next((s for s in sources if url.startswith(dists_url(s))), None)
        if source is None:
            return {}
        failed.setdefault(source, reason.strip() or "no reason given")
    return failed


def dists_url(source):
    """'URL SUITE COMPONENT...' -> the URL its lists are fetched under."""
    url, suite = source.split()[:2]
    return f"{url.rstrip('/')}/dists/{suite}/"


def fetch_debs(apt_dir, arch):
    """Download the userland's packages and their dependencies for arch, and the amd64
    qemu-user, into apt_dir; returns (the arch's .deb paths, the qemu .deb path)."""
    options = private_apt(os.path.join(apt_dir, arch.name), arch.name, MIRRORS,
                          optional=OPTIONAL_MIRRORS)
    run(["apt-get", *options, "install", "-y", "--download-only", "--no-install-recommends",
         *arch.packages], f"apt-get download of {arch.name} python3.11")
    archives = os.path.join(apt_dir, arch.name, "cache", "archives")
    debs = sorted(os.path.join(archives, n) for n in os.listdir(archives) if n.endswith(".deb"))
    qemu_dir = os.path.join(apt_dir, "amd64", "download")
    options = private_apt(os.path.join(apt_dir, "amd64"), "amd64",
                          [f"http://deb.debian.org/debian {QEMU_SUITE} main"])
    run(["apt-get", *options, "download", QEMU_PACKAGE], "apt-get download of qemu",
        cwd=qemu_dir)
    qemu = [os.path.join(qemu_dir, n) for n in os.listdir(qemu_dir) if n.endswith(".deb")]
    if not debs or len(qemu) != 1:
        raise UserError(f"apt-get left no packages in {apt_dir}")
    return debs, qemu[0]


def debian_userland(cache=CACHE, arch=ARCHES["arm64"]):
    """{rootfs, qemu}: a Debian userland of arch with python3.11 and an amd64 qemu for it, made
    once (downloads ~75 MB) under cache."""
    final = os.path.join(cache, f"debian-{SUITE}-{arch.name}-"
                                f"{key_of(arch, QEMU_PACKAGE, USERLAND_VERSION)}")
    userland = {"rootfs": os.path.join(final, "rootfs"),
                "qemu": os.path.join(final, "qemu", "usr", "bin", arch.qemu)}
    if os.path.isfile(os.path.join(final, ".complete")):
        return userland
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise UserError("the ARM check needs apt-get and dpkg (a Debian or Ubuntu machine)")
    if not os.path.isfile(KEYRING):
        raise UserError(f"no Debian archive keyring at {KEYRING} (apt install "
                        "debian-archive-keyring)")
    building = f"{final}.part-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        debs, qemu_deb = fetch_debs(os.path.join(building, "apt"), arch)
        for deb in debs:
            run(["dpkg", "-x", deb, os.path.join(building, "rootfs")], f"dpkg -x {deb}")
        run(["dpkg", "-x", qemu_deb, os.path.join(building, "qemu")], f"dpkg -x {qemu_deb}")
        qemu_bin = os.path.join(building, "qemu", "usr", "bin")
        for name in os.listdir(qemu_bin):  # other CPUs' emulators
            if name != arch.qemu:
                os.remove(os.path.join(qemu_bin, name))
        link_alternatives(os.path.join(building, "rootfs"))
        shutil.rmtree(os.path.join(building, "apt"))  # the unpacked trees are what is kept
        with open(os.path.join(building, "packages.txt"), "w") as f:
            f.write("\n".join(os.path.basename(d) for d in [*debs, qemu_deb]) + "\n")
        open(os.path.join(building, ".complete"), "w").close()
        os.rename(building, final)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return userland


def link_alternatives(rootfs):
    """The links update-alternatives would make for BLAS and LAPACK (numpy's): dpkg -x runs no
    maintainer script, and Debian's libblas.so.3 lives in <triplet>/blas/ behind one."""
    for library in glob.glob(os.path.join(rootfs, "usr", "lib", "*", "*", "lib*.so.3")):
        folder = os.path.dirname(library)
        if os.path.basename(folder) not in ("blas", "lapack"):
            continue
        link = os.path.join(os.path.dirname(folder), os.path.basename(library))
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(library, os.path.dirname(link)), link)


def apt_pins(requirements):
    """{pinned name: Debian package} of the lines marked `# apt: PACKAGE` (no wheel on PyPI for
    that architecture: the Pi installs Debian's, which the pin names the version of)."""
    pins = {}
    with open(requirements, encoding="utf-8") as f:
        for line in f:
            marked = APT_PIN.search(line)
            if marked and "==" in line:
                pins[line.split("==")[0].strip()] = marked.group(1)
    return pins


def wheel_site(cache, requirements, arch=ARCHES["arm64"], resolve=False):
    """A folder holding arch's CPython 3.11 wheels of `requirements` (exact pins, no dependency
    resolution: the lock lists them all; `# apt:` pins left to the userland; with resolve,
    their dependencies too), made once."""
    final = os.path.join(cache, f"site-{arch.machine}-py{PYTHON_VERSION}-"
                                f"{key_of(file_key(requirements), arch, resolve)}")
    if os.path.isfile(os.path.join(final, ".complete")):
        return final
    building = f"{final}.part-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    platforms = [a for p in arch.wheel_platforms() for a in ("--platform", p)]
    skip = apt_pins(requirements)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as wheels:
            with open(requirements, encoding="utf-8") as f:
                wheels.write("".join(ln for ln in f
                                     if ln.split("==")[0].strip() not in skip))
            wheels.flush()
            run([sys.executable, "-m", "pip", "install", "--quiet",
                 *([] if resolve else ["--no-deps"]), "--target",
                 building, "--only-binary=:all:", "--python-version", PYTHON_VERSION,
                 "--implementation", "cp", *platforms, "-r", wheels.name],
                f"pip install of the {arch.machine} wheels of {requirements}")
        open(os.path.join(building, ".complete"), "w").close()
        os.rename(building, final)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final


def arm_python(userland, site, arch=ARCHES["arm64"]):
    """(command prefix, environment) that runs the ARM python3.11 with `site` on its path."""
    rootfs = userland["rootfs"]
    command = [userland["qemu"], "-L", rootfs, "-cpu", arch.cpu,
               os.path.join(rootfs, "usr", "bin", "python3.11")]
    return command, clean_env(PYTHONPATH=site)


def clean_env(**extra):
    """This environment without anything that points a python at other packages or libraries."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "LD_PRELOAD",
                        "VIRTUAL_ENV", "PYTHONSTARTUP", KERNELS_ENV)}
    env.update(PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def run_measured(cmd, env, cwd, log_dir, stdin_path=None, timeout=900):
    """Run cmd in cwd, its output kept in log_dir; (return code, stdout, stderr, wall seconds,
    peak RSS in MiB of the process: under qemu, the emulator's, guest memory included)."""
    start = time.perf_counter()
    with open(stdin_path or os.devnull, "rb") as stdin, \
            open(os.path.join(log_dir, "stdout.txt"), "w+") as out, \
            open(os.path.join(log_dir, "stderr.txt"), "w+") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=stdin, stdout=out, stderr=err)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read(), err.read(), time.perf_counter() - start,
                usage.ru_maxrss / 1024)


# ---- what is compared ---------------------------------------------------------------------------
def read_table(path, key):
    """{key column value: float row} and the other columns' names, of a CSV the bundle wrote."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = {row[0]: np.array([float(x) for x in row[1:]]) if len(row) > 1 else None
                for row in reader}
    if header[0] != key:
        raise UserError(f"{path}: expected a {key} column first, got {header[0]}")
    return rows, header[1:]


def compare_probabilities(x86, arm, labels, envelope=None, tolerance=INT8_STEP):
    """Compare {name: probabilities} of two runs. A row agrees when every probability is
    within tolerance of x86's, or within its rounding envelope (envelope[name]: the
    probabilities x86 itself gives for the input moved by float rounding, see
    rounding_envelope); its label may differ only when the envelope holds that label too, or
    x86's top two tie within tolerance."""
    if set(x86) != set(arm):
        missing = sorted(set(x86) ^ set(arm))[:3]
        return {"ok": False, "reason": f"different rows ({', '.join(missing)} ...)"}
    envelope = envelope or {}
    worst, beyond, flips, real_flips = 0.0, [], [], []
    for name in sorted(x86):
        a, b = x86[name], arm[name]
        if a is None or b is None:
            if (a is None) != (b is None):
                real_flips.append(name)
            continue
        low, high = envelope.get(name, (a, a))
        difference = float(np.max(np.abs(a - b)))
        worst = max(worst, difference)
        outside = np.maximum(low - tolerance - b, b - high - tolerance)
        if np.max(outside) > 1e-7:
            beyond.append(name)
        top, other = int(np.argmax(a)), int(np.argmax(b))
        if top != other:
            flips.append(name)
            tie = a[top] - a[other] <= tolerance + 1e-7
            if not tie and high[other] < low[top]:  # x86 never moves to that label
                real_flips.append(name)
    ok = not beyond and not real_flips
    return {"ok": ok, "rows": len(x86), "max_abs_difference": worst, "tolerance": tolerance,
            "rows_within_tolerance": sum(float(np.max(np.abs(x86[n] - arm[n]))) <= tolerance
                                         + 1e-7 for n in x86 if x86[n] is not None
                                         and arm[n] is not None),
            "rows_beyond_envelope": beyond, "label_differences": flips,
            "label_differences_beyond_envelope": real_flips, "labels": labels}


ENVELOPE_DRAWS = 64
ENVELOPE_RELATIVE = 1e-6  # ~8 float32 ulps: the size of a rounding difference between two CPUs


def rounding_envelope(model_path, paths, draws=ENVELOPE_DRAWS, relative=ENVELOPE_RELATIVE,
                      seed=0):
    """{clip name: (lowest, highest) probabilities} of a model over its clips and `draws`
    copies of each scaled sample by sample by 1 + N(0, relative): how far float rounding
    before the model's int8 layers (its float front end, the input's quantization) can move
    each output on this machine. A clip near a quantization boundary moves by several output
    steps; where another CPU's rounding differs, it moves as much there."""
    from kws.audio import read_wav  # soundfile: only where the envelope is measured

    model, _ = load_model(model_path)
    rng = np.random.default_rng(seed)
    envelope = {}
    for path in paths:
        x = read_wav(path)
        probs = [model.predict(x)] + [
            model.predict((x * (1 + rng.normal(0, relative, x.size))).astype(np.float32))
            for _ in range(draws)]
        envelope[os.path.basename(path)] = (np.min(probs, axis=0), np.max(probs, axis=0))
    return envelope


def write_envelope(model_path, clips_dir, out_path):
    """rounding_envelope of every clip of a flat folder as CSV rows fname,low|high,<probs>."""
    names = sorted(n for n in os.listdir(clips_dir) if n.lower().endswith(".wav"))
    envelope = rounding_envelope(model_path, [os.path.join(clips_dir, n) for n in names])
    with open(out_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        for name in names:
            for side, row in zip(("low", "high"), envelope[name]):
                writer.writerow([name, side, *(f"{p:.8f}" for p in row)])


def read_envelope(path):
    rows = {}
    with open(path, newline="", encoding="utf-8") as f:
        for name, side, *values in csv.reader(f):
            rows.setdefault(name, {})[side] = np.array([float(v) for v in values])
    return {name: (r["low"], r["high"]) for name, r in rows.items()}


def read_detections(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(int(float(r["time_ms"])), r["label"], float(r["score"]))
                for r in csv.DictReader(f)]


def compare_detections(x86, arm, tolerance=INT8_STEP, shift_ms=0.0, marginal_below=None):
    """Detections of the same words in the same order, at times within shift_ms (0: equal) and
    scores (averages of probabilities) within tolerance. marginal_below: detections scoring
    under it on either side are left out (a runtime whose probabilities differ by up to the gap
    between the threshold and it may fire them hops apart, as another word, or not at all; the
    hop-by-hop comparison bounds them instead)."""
    marginal = 0
    if marginal_below is not None:
        kept_x86 = [d for d in x86 if d[2] >= marginal_below]
        kept_arm = [d for d in arm if d[2] >= marginal_below]
        marginal = len(x86) - len(kept_x86) + len(arm) - len(kept_arm)
        x86, arm = kept_x86, kept_arm

    def close(a, b):
        return (a[1] == b[1] and abs(a[0] - b[0]) <= shift_ms
                and abs(a[2] - b[2]) <= tolerance + 1e-4)

    same = len(x86) == len(arm) and all(close(a, b) for a, b in zip(x86, arm))
    return {"ok": same, "x86": len(x86), "arm": len(arm), "shift_ms": shift_ms,
            "marginal_left_out": marginal, "first_difference": None if same else next(
                ([a, b] for a, b in zip(x86, arm) if not close(a, b)),
                ["count", len(x86), len(arm)])}


def largest_shift(a, b):
    """The largest time difference between matching detections of two runs (same words in the
    same order), or None when their words differ."""
    if [d[1] for d in a] != [d[1] for d in b]:
        return None
    return max((abs(x[0] - y[0]) for x, y in zip(a, b)), default=0)


# The share of rows whose differences make a run's typical difference (the rest: its tail)
TYPICAL_QUANTILE = 0.95
# How much larger the worst row of one more kernel set may be than the worst that x86's kernel
# sets show: the largest of a few hundred rows is an extreme, which varied by up to 1.15x
# between the 32-bit ARM run and x86's own kernel sets in the runs measured (BENCHMARKS.md)
WORST_ROW_FACTOR = 1.5


def row_differences(x86, other):
    """Each row's largest probability difference between two runs of the same rows (a row
    either run has no answer for is left out)."""
    return np.array([float(np.max(np.abs(x86[r] - other[r]))) for r in sorted(x86)
                     if x86[r] is not None and other[r] is not None])


def kernel_spread(runs, origin):
    """How far int8 kernels that round differently move one model: over the runs of {name:
    {row: probabilities}} other than runs[origin] (the same model on other kernels), the
    largest difference of a row from runs[origin] ("worst", and the run: "farthest") and the
    largest TYPICAL_QUANTILE of a run's row differences ("typical"). Every run must hold the
    same rows."""
    spread = {"worst": 0.0, "typical": 0.0, "farthest": None}
    for name, rows in runs.items():
        if set(rows) != set(runs[origin]):
            raise UserError(f"the {name} run has other rows than the {origin} run")
        differences = row_differences(runs[origin], rows)
        if name == origin or not differences.size:
            continue
        if spread["farthest"] is None or differences.max() > spread["worst"]:
            spread.update(worst=float(differences.max()), farthest=name)
        spread["typical"] = max(spread["typical"],
                                float(np.quantile(differences, TYPICAL_QUANTILE)))
    return spread


def compare_within_spread(x86, arm, labels, spread, envelope=None, step=INT8_STEP):
    """compare_probabilities for a runtime whose int8 kernels round differently from x86's
    (tflite-runtime on 32-bit ARM), judged by how far x86's own other kernel sets move the
    model (spread: kernel_spread over the run's inputs). Its typical row difference may be as
    large as theirs plus one step, its worst row WORST_ROW_FACTOR times their worst plus one
    step; its top label may change only where x86's top two scores are within twice their
    worst plus a step (a tie at that rounding: one score may fall by it while the other rises
    by it)."""
    strict = compare_probabilities(x86, arm, labels, envelope, step)
    if "rows" not in strict:
        return strict
    differences = row_differences(x86, arm)
    typical = float(np.quantile(differences, TYPICAL_QUANTILE)) if differences.size else 0.0
    allowed_typical = spread["typical"] + step
    allowed = WORST_ROW_FACTOR * spread["worst"] + step
    tie = 2 * (spread["worst"] + step)
    decided = []  # label changes where x86 was not tied within `tie`
    for name in strict["label_differences"]:
        a, b = x86[name], arm[name]
        if a[np.argmax(a)] - a[np.argmax(b)] > tie + 1e-7:
            decided.append(name)
    ok = (typical <= allowed_typical + 1e-7 and strict["max_abs_difference"] <= allowed + 1e-7
          and not decided)
    return {**strict, "ok": ok, "typical_difference": typical,
            "typical_tolerance": allowed_typical, "tolerance": allowed, "tie": tie,
            "kernel_spread": spread, "label_differences_beyond_a_tie": decided}


# ---- inputs -------------------------------------------------------------------------------------
def synthetic_clips(folder, count=24, seed=0):
    """16 kHz clips of several kinds (noise, tones, glides, syllable-like bursts, near-silence)
    under folder/; returns their paths. Real speech is better (arm_check.py --clips); these
    need nothing but numpy."""
    from kws.audio import write_wav

    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    paths = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            x = rng.normal(0, 10 ** rng.uniform(-3.5, -1), t.size)
        elif kind == 1:
            x = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 3000) * t)
        elif kind == 2:
            f0, f1 = rng.uniform(100, 400), rng.uniform(500, 3500)
            x = 0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / 2 * t ** 2))
        elif kind == 3:
            envelope = np.exp(-((t - rng.uniform(0.3, 0.7)) / rng.uniform(0.05, 0.2)) ** 2)
            voice = sum(np.sin(2 * np.pi * k * rng.uniform(90, 250) * t) / k for k in range(1, 8))
            x = 0.2 * envelope * voice + rng.normal(0, 0.003, t.size)
        else:
            x = np.zeros(t.size)
            start = rng.integers(2000, 12000)
            x[start:start + 2000] = rng.normal(0, 0.3, 2000)
        path = os.path.join(folder, f"clip{i:03d}.wav")
        write_wav(path, x.astype(np.float32))
        paths.append(path)
    return paths


def stream_from_clips(paths, path_raw, gap_seconds=0.5, seed=0):
    """16 kHz s16le PCM of the clips one after another over quiet noise: what arecord pipes."""
    from kws.audio import read_wav

    rng = np.random.default_rng(seed)
    parts = []
    for p in paths:
        parts.append(rng.normal(0, 0.003, int(gap_seconds * 16000)))
        parts.append(read_wav(p))
    samples = np.clip(np.concatenate(parts), -1, 1)
    with open(path_raw, "wb") as f:
        f.write((samples * 32767).astype("<i2").tobytes())
    return len(samples) / 16000
