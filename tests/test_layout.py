"""The shape of the code: scripts at the root, one library under them, no cycles.

Every root .py is a script (it has a __main__ block); shared code lives in kws/, which no one
runs; no module imports a script, with no exception (a script is a command line, its ideas live in
kws/); the kws modules import each other without a cycle; labels and common stay light enough
for the Pi. Scripts are thin (at most 300 lines), no function is over 60 lines, imports sit at
the top of a module except heavy or optional packages, and importing a script loads no
TensorFlow."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imports(path):
    """Top-level module names a file imports, anywhere in it (lazy imports count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            if node.module == "kws":
                names |= {f"kws.{alias.name}" for alias in node.names}
    return names


def is_script(path):
    return '__name__ == "__main__"' in path.read_text()


def library_modules():
    """{dotted name: path} of every module under kws/, packages included."""
    found = {}
    for path in (REPO / "kws").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def test_the_root_holds_scripts_only_and_kws_holds_no_script():
    assert all(is_script(p) for p in REPO.glob("*.py")), \
        [p.name for p in REPO.glob("*.py") if not is_script(p)]
    assert not [name for name, p in library_modules().items() if is_script(p)]


def test_no_module_imports_a_script():
    scripts = {p.stem for p in REPO.glob("*.py")}
    offenders = {}
    for path in list(REPO.glob("*.py")) + list(library_modules().values()):
        bad = {m.split(".")[0] for m in imports(path)} & scripts
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert not offenders


def test_the_library_has_no_import_cycle():
    modules = library_modules()
    graph = {name: {m for m in imports(p) if m in modules and m != name}
             for name, p in modules.items()}
    done, active = set(), []

    def visit(node):
        assert node not in active, "import cycle: " + " -> ".join(active + [node])
        if node in done:
            return
        active.append(node)
        for dep in graph.get(node, ()):
            visit(dep)
        active.pop()
        done.add(node)

    for node in graph:
        visit(node)
    assert "kws.audio" not in graph["kws.common"]  # the cycle that used to be


def test_the_pi_modules_need_no_heavy_library():
    heavy = {"tensorflow", "keras", "pandas", "scipy", "librosa", "matplotlib", "soundfile"}
    for name in ("common", "labels", "folders", "__init__"):
        found = {m.split(".")[0] for m in imports(REPO / "kws" / f"{name}.py")} & heavy
        assert not found, (name, found)


# Third-party packages a command may load only where it needs them: heavy at start-up (TensorFlow
# prints its start-up lines before a bad flag could be reported) or absent on some machines (the
# Pi has no TensorFlow, scipy or pandas; Ray, sounddevice and the voices are optional).
LAZY_PACKAGES = {"tensorflow", "keras", "ray", "sounddevice", "matplotlib", "scipy", "pandas",
                 "PIL", "soxr", "piper", "espeakng_loader", "ai_edge_litert", "tflite_runtime",
                 "librosa", "pyarrow", "aiohttp", "soundfile", "google", "tqdm", "selenium",
                 "playwright"}
MAX_SCRIPT_LINES = 300
MAX_FUNCTION_LINES = 60


def python_files():
    return sorted(REPO.glob("*.py")) + sorted(library_modules().values())


def module_level_imports(path):
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def heavy_library_modules():
    """kws modules that load a lazy package when imported (directly or through kws modules)."""
    modules = library_modules()
    heavy = {name for name, path in modules.items()
             if {m.split(".")[0] for m in module_level_imports(path)} & LAZY_PACKAGES}
    changed = True
    while changed:
        changed = False
        for name, path in modules.items():
            if name not in heavy and module_level_imports(path) & heavy:
                heavy.add(name)
                changed = True
    return heavy


def test_scripts_are_thin_command_lines():
    long = {p.name: n for p in REPO.glob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_SCRIPT_LINES}
    assert not long, f"scripts over {MAX_SCRIPT_LINES} lines (move the idea into kws/): {long}"


def test_no_function_is_long():
    long = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


def test_imports_are_at_the_top_but_heavy_or_optional_ones():
    heavy = heavy_library_modules()
    late = []
    for path in python_files():
        for function in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] not in LAZY_PACKAGES and name not in heavy:
                        late.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert not late, late


def test_no_script_but_model_loads_tensorflow_when_imported():
    """A script checks its flags before TensorFlow starts (it prints start-up lines on stderr and
    takes seconds): its TensorFlow-backed modules are imported in main(), after the flags."""
    scripts = sorted(p.stem for p in REPO.glob("*.py") if p.stem != "model")
    code = f"import sys; import {', '.join(scripts)}; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
