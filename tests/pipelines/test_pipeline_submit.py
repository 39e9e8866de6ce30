"""``audiomcq pipeline submit`` against a small stand-in of the KFP v2beta1 API on 127.0.0.1: the run carries the
compiled pipeline, its arguments and its placement, and the token travels as a bearer header."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("kfp")


def test_submit_starts_a_run_on_a_kfp_api(tmp_path, monkeypatch):
    """`pipeline submit` against a small server on 127.0.0.1 that answers like the KFP v2beta1 API: the run carries
    the compiled pipeline and its arguments, and the token travels as a bearer header (never printed)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from audiomcq.cli import main

    seen = []

    class KFP(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, obj):
            data = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # healthz, and the experiment lookup by name (none yet)
            seen.append(("GET", self.path, self.headers.get("Authorization"), None))
            self._reply({})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(("POST", self.path, self.headers.get("Authorization"), body))
            if self.path.startswith("/apis/v2beta1/experiments"):
                self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
            else:
                self._reply({"run_id": "run-42", "display_name": body.get("display_name"), "experiment_id": "exp-1"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), KFP)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("KFP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("KFP_TOKEN", "throwaway-token")
    monkeypatch.setenv("KFP_SERVICE_ACCOUNT", "audiomcq-pipeline")
    try:
        assert (
            main(
                [
                    "pipeline",
                    "submit",
                    "--name",
                    "audiomcq-filter",
                    "--param",
                    "data=s3://d/records.jsonl",
                    "--param",
                    'models=["s3://m/f1", "s3://m/f2"]',
                    "--run-name",
                    "acf-1",
                ]
            )
            == 0
        )
        # --recipe and --set are the pipeline's recipe and overrides parameters on a cluster too
        argv = ["pipeline", "submit", "audiomcq-demo", "--recipe", "smoke", "--set", "sft.steps=2"]
        assert main(argv) == 0
    finally:
        server.shutdown()
    run, demo = [body for method, path, _, body in seen if method == "POST" and path.startswith("/apis/v2beta1/runs")]
    demo_params = demo["runtime_config"]["parameters"]
    assert demo_params["recipe"] == "smoke" and demo_params["overrides"] == ["sft.steps=2"]
    assert run.get("service_account") == "audiomcq-pipeline"  # the account the RBAC is bound to
    assert run["display_name"] == "acf-1" and run["experiment_id"] == "exp-1"
    spec = run["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "audiomcq-filter"
    assert "secretAsEnv" in json.dumps(spec["platform_spec"])  # placement travels with the run
    params = run["runtime_config"]["parameters"]
    assert params["data"] == "s3://d/records.jsonl" and params["models"] == ["s3://m/f1", "s3://m/f2"]
    assert all(auth == "Bearer throwaway-token" for _, _, auth, _ in seen)
