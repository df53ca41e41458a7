"""The shape of the code: scripts at the root, one library under them, no cycles.

Every root .py is a script (it has a __main__ block); shared code lives in kws/, which no one
runs; no module imports a script, with no exception (a script is a command line, its ideas live in
kws/); the kws modules import each other without a cycle; labels and common stay light enough
for the Pi."""

import ast
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
