"""docs/serving.md's examples, run verbatim against a real ``audiomcq serve`` on 127.0.0.1 (``$BASE``), and the
contract it promises between the CPU predictor and the vLLM runtime (same path prefix, same model name)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("kserve")
REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "serving.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in BLOCK.finditer(DOC.read_text())]


@pytest.fixture(scope="module")
def server(tiny_omni, tmp_path_factory):
    from audiomcq.bench.serve import running_server

    log = tmp_path_factory.mktemp("serve-docs") / "server.log"
    try:
        with running_server(tiny_omni, ["--max-wait-ms", "5", "--max-completion-tokens", "32"], log) as base:
            yield base
    finally:
        if log.is_file():
            print(log.read_text()[-3000:])


def test_the_doc_has_one_example_per_route():
    text = "\n".join(code for _, code in blocks())
    routes = (
        "/v2/health/ready",
        "/v1/models/audiomcq:predict",
        "/v2/models/audiomcq/infer",
        "/v2/models/audiomcq",
        "/openai/v1/chat/completions",
        "/openai/v1/models",
        "/openai/v1/models/audiomcq",
        "/metrics",
        "chat.completions.create",
        "client.infer(",
    )
    for route in routes:
        assert route in text, route


@pytest.mark.parametrize(("index", "lang"), [(i, lang) for i, (lang, _) in enumerate(blocks())])
def test_each_example_works_verbatim(server, synth_corpus, tmp_path, index, lang):
    if lang == "bash" and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    if "tritonclient" in blocks()[index][1]:
        pytest.importorskip("tritonclient.http")
    record = json.loads((synth_corpus / "eval.jsonl").read_text().splitlines()[0])
    shutil.copy(synth_corpus / record["audio_path"], tmp_path / "clip.wav")
    code = blocks()[index][1]
    cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(
        cmd, cwd=tmp_path, env={**os.environ, "BASE": server}, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.strip()
    if '"stream": true' in code:
        assert out.rstrip().endswith("data: [DONE]") and re.search(r"\"finish_reason\": \"(stop|length)\"", out)
    elif lang == "bash" and "/metrics" not in code:
        for line in out.splitlines():  # one JSON document per curl call, back to back
            assert line.lstrip().startswith("{"), line
        assert '"error"' not in out
    if "predict" in code:
        assert '"answer_source"' in out


def test_the_vllm_runtime_offers_the_same_prefix_and_model_name():
    """vLLM's --root-path is FastAPI's root_path: a path under it is routed as if the prefix were not there, so
    vLLM's /v1/... routes answer at /openai/v1/..., the predictor's prefix, under the InferenceService's name."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from audiomcq.serve.openai_api import PREFIX

    docs = yaml.safe_load_all((REPO / "manifests" / "base" / "serving-runtimes.yaml").read_text())
    runtimes = {d["metadata"]["name"]: d for d in docs}
    vllm = runtimes["audiomcq-vllm"]["spec"]["containers"][0]["args"]
    ours = runtimes["audiomcq"]["spec"]["containers"][0]["args"]
    assert "--served-model-name={{.Name}}" in vllm and ours[ours.index("--name") + 1] == "{{.Name}}"
    (root,) = [a.split("=", 1)[1] for a in vllm if a.startswith("--root-path=")]
    app = FastAPI()
    app.get("/v1/models")(lambda: {"object": "list"})  # where vLLM mounts its model list
    app.root_path = root  # what vLLM does with --root-path
    assert TestClient(app).get(f"{PREFIX}/models").status_code == 200
