"""Third-party clients against a real ``audiomcq serve`` on 127.0.0.1: tritonclient (JSON and binary tensors),
curl and plain HTTP without a Content-Type, and routes a client made up, which must never count as server errors
(nor page anyone through the shipped alert rules in a real Prometheus)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import free_port, wait_ready

pytest.importorskip("kserve")
RULES = Path(__file__).resolve().parents[2] / "manifests" / "base" / "monitoring" / "alerts.yaml"
BAD_ROUTES = [
    ("POST", "/v2/models/audiomcq/versions/1/infer"),
    ("GET", "/v2/models/audiomcq/versions/1"),
    ("GET", "/v2/models/audiomcq/versions/1/ready"),
    ("POST", "/v1/models/audiomcq:explain"),
    ("POST", "/v2/models/audiomcq/generate"),
    ("GET", "/v1/models/audiomcq:predict"),
    ("POST", "/nothing/here"),
    ("PUT", "/v2/models/audiomcq/infer"),
]


@pytest.fixture(scope="module")
def server(tiny_omni, tmp_path_factory):
    from audiomcq.bench.serve import running_server

    log = tmp_path_factory.mktemp("serve-clients") / "server.log"
    try:
        with running_server(tiny_omni, ["--max-wait-ms", "5"], log) as base:
            yield base
    finally:
        if log.is_file():
            print(log.read_text()[-3000:])


@pytest.fixture(scope="module")
def question(synth_corpus):
    record = json.loads((synth_corpus / "eval.jsonl").read_text().splitlines()[0])
    audio = base64.b64encode((synth_corpus / record["audio_path"]).read_bytes()).decode()
    return {"audio": audio, "question": record["question"], "choices": record["choices"]}


def _raw(server: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request through http.client, which adds no Content-Type of its own: (status, body)."""
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _v2_json(q: dict) -> dict:
    def tensor(name, value):
        return {"name": name, "datatype": "BYTES", "shape": [1], "data": [value]}

    return {
        "inputs": [
            tensor("question", q["question"]),
            tensor("choices", json.dumps(q["choices"])),
            tensor("audio", q["audio"]),
        ]
    }


def test_json_without_a_content_type_is_json_on_v1_and_v2(server, question):
    v1 = json.dumps({"instances": [question]}).encode()
    status, body = _raw(server, "POST", "/v1/models/audiomcq:predict", v1)
    assert status == 200, body
    expected = json.loads(body)["predictions"][0]
    status, body = _raw(server, "POST", "/v2/models/audiomcq/infer", json.dumps(_v2_json(question)).encode())
    assert status == 200, body
    outputs = {o["name"]: o["data"] for o in json.loads(body)["outputs"]}
    assert outputs["answer"] == [expected["answer"]] and outputs["answer_source"] == [expected["answer_source"]]
    # a form label (what curl -d and urllib send) is no different
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert _raw(server, "POST", "/v1/models/audiomcq:predict", v1, form)[0] == 200
    status, body = _raw(server, "POST", "/v1/models/audiomcq:predict", b"question=what", form)
    assert status == 400 and b"not valid JSON" in body
    status, body = _raw(server, "POST", "/v2/models/audiomcq/infer", b"\x00\x01binary?")
    assert status == 400 and b"Inference-Header-Content-Length" in body


def test_curl_without_a_content_type(server, question, tmp_path):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    (tmp_path / "v1.json").write_text(json.dumps({"instances": [question]}))
    out = subprocess.run(
        [curl, "-sS", "-d", "@v1.json", f"{server}/v1/models/audiomcq:predict"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    prediction = json.loads(out.stdout)["predictions"][0]
    assert prediction["answer"] in question["choices"] and prediction["answer_source"] in ("generated", "scored")


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_in_json_and_binary_modes(server, question, binary):
    http_client = pytest.importorskip("tritonclient.http")
    client = http_client.InferenceServerClient(
        url=server.removeprefix("http://"), connection_timeout=120, network_timeout=120
    )
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("audiomcq")
        meta = client.get_model_metadata("audiomcq")
        assert {o["name"] for o in meta["outputs"]} == {"answer", "index", "raw", "scores", "answer_source"}
        inputs = []
        for name, value in (
            ("question", question["question"]),
            ("choices", json.dumps(question["choices"])),
            ("audio", question["audio"]),
        ):
            tensor = http_client.InferInput(name, [1], "BYTES")
            tensor.set_data_from_numpy(np.array([value.encode()], dtype=np.object_), binary_data=binary)
            inputs.append(tensor)
        names = ("answer", "index", "raw", "scores", "answer_source")
        outputs = [http_client.InferRequestedOutput(n, binary_data=binary) for n in names]
        result = client.infer("audiomcq", inputs, outputs=outputs)
    finally:
        client.close()
    index = int(result.as_numpy("index")[0])
    answer = result.as_numpy("answer")[0]
    answer = answer.decode() if isinstance(answer, bytes) else str(answer)
    assert answer == question["choices"][index]
    assert result.as_numpy("scores").shape == (1, len(question["choices"]))
    source = result.as_numpy("answer_source")[0]
    assert (source.decode() if isinstance(source, bytes) else str(source)) in ("generated", "scored")


def test_routes_the_server_does_not_offer_are_client_errors(server):
    def errors() -> dict[str, float]:
        text = urllib.request.urlopen(f"{server}/metrics", timeout=10).read().decode()
        found = re.findall(r'^audiomcq_serve_errors_total\{kind="(\w+)",route="[^"]*"\} (\S+)$', text, re.MULTILINE)
        out: dict[str, float] = {}
        for kind, value in found:
            out[kind] = out.get(kind, 0.0) + float(value)
        return out

    before = errors()
    for i in range(40):
        method, path = BAD_ROUTES[i % len(BAD_ROUTES)]
        status, body = _raw(server, method, path, b"{}" if method != "GET" else None)
        assert status in (404, 405), (method, path, status, body)
        if "versions" in path:
            assert b"has no versions" in body
        if "explain" in path:
            assert b"has no explainer" in body
    after = errors()
    assert after.get("client", 0) - before.get("client", 0) == 40
    assert after.get("server", 0) == before.get("server", 0) == 0


@pytest.mark.slow
def test_bad_routes_leave_the_shipped_error_alert_inactive_in_a_real_prometheus(server, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (.ci/run installs it)")
    rules = tmp_path / "alerts.rules.yaml"
    rules.write_text(yaml.safe_dump(yaml.safe_load(RULES.read_text())["spec"], sort_keys=False))
    config = tmp_path / "prometheus.yml"
    target = server.removeprefix("http://")
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{rules}']\n"
        f"scrape_configs: [{{job_name: audiomcq-serve, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def query(expr: str) -> list:
        q = urllib.parse.quote(expr)
        return json.loads(urllib.request.urlopen(f"{url}/api/v1/query?query={q}", timeout=5).read())["data"]["result"]

    try:
        wait_ready(f"{url}/-/ready")
        deadline = time.monotonic() + 20
        while not query("audiomcq_serve_requests_total") and time.monotonic() < deadline:
            time.sleep(0.5)  # a first scrape before the burst, so the burst is a rate
        for i in range(40):
            method, path = BAD_ROUTES[i % len(BAD_ROUTES)]
            _raw(server, method, path, b"{}" if method != "GET" else None)
        expr = 'sum(audiomcq_serve_requests_total{code=~"404|405"})'
        while time.monotonic() < deadline and not (query(expr) and float(query(expr)[0]["value"][1]) >= 40):
            time.sleep(0.5)
        assert query(expr) and float(query(expr)[0]["value"][1]) >= 40
        time.sleep(3)  # a few rule evaluations over the scraped burst
        groups = json.loads(urllib.request.urlopen(f"{url}/api/v1/rules", timeout=5).read())["data"]["groups"]
        rule = next(r for g in groups for r in g["rules"] if r["name"] == "AudiomcqServeErrorRate")
        assert rule["health"] == "ok" and rule["lastEvaluation"] > "2000"
        assert query('ALERTS{alertname="AudiomcqServeErrorRate"}') == []
    finally:
        proc.terminate()
        proc.wait()
