"""Repository contracts: the design card's top level, the library's import boundary, and CI = README's command."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO


def test_top_level_layout():
    for name in ("audiomcq", "components", "pipelines", "images", "manifests", "tests"):
        assert (REPO / name).is_dir(), name
    for name in ("skaffold.yaml", "pyproject.toml", "Makefile", "README.md", ".ci/run"):
        assert (REPO / name).is_file(), name


def test_library_never_imports_orchestration_packages():
    """kfp never; the Kubernetes client (and the Kubeflow SDK over it) only in the cluster adapter,
    audiomcq.infra.k8s."""
    for path in (REPO / "audiomcq").rglob("*.py"):
        forbidden = (
            {"kfp"} if "k8s" in path.relative_to(REPO / "audiomcq").parts else {"kfp", "kubernetes", "kubeflow"}
        )
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path} imports {name}"


def test_library_logs_instead_of_printing():
    for path in (REPO / "audiomcq").rglob("*.py"):
        if path.parent.name == "cli":  # the CLI package prints for people
            continue
        assert not re.search(r"^\s*print\(", path.read_text(), re.MULTILINE), f"{path} prints"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme
    assert re.search(r"^make test\s*$", ci, re.MULTILINE)


def test_modules_stay_small():
    """Library, components, pipelines, tests, images and examples alike."""
    checked = 0
    for top in ("audiomcq", "components", "pipelines", "tests", "images", "examples", "scripts"):
        for path in (REPO / top).rglob("*.py"):
            checked += 1
            assert len(path.read_text().splitlines()) <= 400, f"{path} is over 400 lines"
    assert checked > 250


def _imports(path) -> set[str]:
    """Every module ``path`` imports, at any depth (function bodies included: components import there)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


# The layers, bottom up: the library, the KFP step bodies, the components, the pipelines; the CLI and the benches
# sit on top. A layer may import those below it, never those above.
LAYERS = {
    "library": {"audiomcq.stages", "audiomcq.cli", "audiomcq.bench", "audiomcq.components", "audiomcq.pipelines"},
    "stages": {"audiomcq.cli", "audiomcq.bench", "audiomcq.components", "audiomcq.pipelines"},
    "components": {"audiomcq.cli", "audiomcq.bench", "audiomcq.pipelines"},
    "pipelines": {"audiomcq.cli", "audiomcq.bench"},
    "bench": {"audiomcq.cli"},
}


def _layer(rel) -> str | None:
    parts = rel.parts
    if parts[0] in ("components", "pipelines"):
        return parts[0]
    if parts[0] == "audiomcq":
        return {"stages": "stages", "cli": None, "__main__.py": None, "bench": "bench"}.get(parts[1], "library")
    return None


def test_each_layer_imports_only_the_layers_below_it():
    checked = 0
    for top in ("audiomcq", "components", "pipelines"):
        for path in (REPO / top).rglob("*.py"):
            layer = _layer(path.relative_to(REPO))
            if layer is None:
                continue
            checked += 1
            for name in _imports(path):
                for above in LAYERS[layer]:
                    assert not (name == above or name.startswith(above + ".")), f"{path} ({layer}) imports {name}"
    assert checked > 150


def test_wheel_installs_components_and_pipelines_under_audiomcq(tmp_path):
    """The wheel holds one top-level package, audiomcq, with components/ and pipelines/ inside it, every module of
    the tree and the package data; installed alone, its pipelines import from there."""
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    for name in ("audiomcq", "components", "pipelines"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "compiled"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("audiomcq-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"audiomcq"}
    for top, inside in (
        ("audiomcq", "audiomcq"),
        ("components", "audiomcq/components"),
        ("pipelines", "audiomcq/pipelines"),
    ):
        for path in (REPO / top).rglob("*.py"):
            assert f"{inside}/{path.relative_to(REPO / top).as_posix()}" in names, f"{path} is not in the wheel"
    assert "audiomcq/recipes/demo.yaml" in names

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import importlib.util, audiomcq.pipelines.run as r, audiomcq.components as c; "
        "print(r.__file__); print(len(c.all_components())); "
        "print(importlib.util.find_spec('components'), importlib.util.find_spec('pipelines'))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    assert out[0].startswith(str(target)), out
    assert int(out[1]) > 20
    assert out[2] == "None None"
