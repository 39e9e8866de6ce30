"""The KFP pipeline compiles, its components are thin shims, and it runs locally end to end on the smoke recipe."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO

pytest.importorskip("kfp")


def test_pipeline_compiles_to_one_yaml(tmp_path):
    from pipelines.run import compile_all

    (path,) = compile_all(tmp_path)
    spec = next(yaml.safe_load_all(path.read_text()))
    assert spec["pipelineInfo"]["name"] == "audiomcq-post-training"
    tasks = spec["root"]["dag"]["tasks"]
    assert {"synth", "pretrain", "acf-filter", "evaluate", "select", "report"} <= set(tasks)
    assert "install_kfp_package" not in path.read_text() and "pip install" not in path.read_text()
    # Reproducible: compiling again gives the same bytes.
    (again,) = compile_all(tmp_path / "again")
    assert again.read_text() == path.read_text()


def test_components_are_thin_shims():
    tree = ast.parse((REPO / "components" / "stages.py").read_text())
    for fn in [n for n in tree.body if isinstance(n, ast.FunctionDef)]:
        body = [n for n in fn.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        imports = [n for n in body if isinstance(n, ast.ImportFrom)]
        assert len(imports) == 1 and imports[0].module.startswith("audiomcq"), fn.name
        assert len(body) <= 3, f"{fn.name} holds logic"
        assert fn.end_lineno - fn.lineno <= 30, fn.name


@pytest.mark.slow
def test_local_pipeline_runs_end_to_end_on_the_smoke_recipe(tmp_path):
    from pipelines.run import run_local

    run_dir = run_local(tmp_path, "smoke")
    report = (run_dir / "report" / "markdown").read_text()
    assert "## Audio-contribution labels" in report and "| base |" in report
    assert "## Dataset generation (template backend" in report  # the embedded default runs generation too
    sdg = json.loads(next(Path(run_dir).rglob("sdg/summary.json")).read_text())
    assert sdg["samples"] > 0 and sdg["llm"]["backend"] == "template"
    selection = json.loads(next(Path(run_dir).rglob("selection.json")).read_text())
    assert selection["selected"] in {c["name"] for c in selection["candidates"]}
    assert (run_dir / "report" / "html").read_text().startswith("<html>")
