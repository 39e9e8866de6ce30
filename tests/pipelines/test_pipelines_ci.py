"""The CI example, run as CI runs it, against a recorder of the KFP v2beta1 REST API on 127.0.0.1.

``examples/ci/submit.sh`` compiles the pipelines pinned to a build's digests, uploads one as a version named by its
content, runs it and waits; the recorder answers like KFP and keeps every request. The run's states are scripted,
so a run that succeeds, fails or outlasts the timeout each gives its own exit status.
"""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from conftest import REPO

pytest.importorskip("kfp")

CI = REPO / "examples" / "ci"
API = "/apis/v2beta1"
TOKEN = "ci-secret-token-value"


class KFP(ThreadingHTTPServer):
    """A small KFP API: pipelines, versions (multipart uploads), experiments and runs, kept in memory. Each run's
    ``GET`` answers the next of ``states`` (then the last one again); every request is recorded."""

    def __init__(self, states: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.states = states
        self.requests: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, Iterator[str]] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def calls(self, method: str, pattern: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and re.fullmatch(pattern, r["path"])]


class Handler(BaseHTTPRequestHandler):
    server: KFP

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, obj: dict, status: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> tuple[str, dict, dict]:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            message = email.message_from_bytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
            body = {
                part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                for part in message.get_payload()
            }
        else:
            body = json.loads(raw) if raw else {}
        with self.server.lock:
            self.server.requests.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": query,
                    "body": body,
                    "auth": self.headers.get("Authorization"),
                }
            )
        return url.path, query, body

    @staticmethod
    def _named(items: dict[str, dict], query: dict) -> list[dict]:
        wanted = json.loads(query.get("filter", '{"predicates": []}'))["predicates"]
        return [i for i in items.values() if all(i["display_name"] == p["stringValue"] for p in wanted)]

    def do_GET(self) -> None:
        path, query, _ = self._record()
        s = self.server
        if path == f"{API}/healthz":
            self._reply({"multi_user": False})
        elif path == f"{API}/pipelines":
            self._reply({"pipelines": self._named(s.pipelines, query)})
        elif m := re.fullmatch(rf"{API}/pipelines/([^/]+)/versions", path):
            mine = {k: v for k, v in s.versions.items() if v["pipeline_id"] == m.group(1)}
            self._reply(
                {
                    "pipeline_versions": [
                        {k: v for k, v in i.items() if k != "package"} for i in self._named(mine, query)
                    ]
                }
            )
        elif path == f"{API}/experiments":
            self._reply({"experiments": self._named(s.experiments, query)})
        elif m := re.fullmatch(rf"{API}/runs/([^/:]+)", path):
            self._reply({"run_id": m.group(1), "state": next(s.runs[m.group(1)])})
        else:
            self._reply({"error": f"no route {path}"}, 404)

    def do_POST(self) -> None:
        path, query, body = self._record()
        s = self.server
        if path == f"{API}/pipelines":
            pid = f"pipeline-{len(s.pipelines) + 1}"
            s.pipelines[pid] = {"pipeline_id": pid, **body}
            self._reply(s.pipelines[pid])
        elif path == f"{API}/pipelines/upload_version":
            vid = f"version-{len(s.versions) + 1}"
            s.versions[vid] = {
                "pipeline_id": query["pipelineid"],
                "pipeline_version_id": vid,
                "display_name": query["name"],
                "package": body["uploadfile"],
            }
            self._reply({k: v for k, v in s.versions[vid].items() if k != "package"})
        elif path == f"{API}/experiments":
            eid = f"experiment-{len(s.experiments) + 1}"
            s.experiments[eid] = {"experiment_id": eid, **body}
            self._reply(s.experiments[eid])
        elif path == f"{API}/runs":
            rid = f"run-{len(s.runs) + 1}"
            s.runs[rid] = iter(s.states + [s.states[-1]] * 10_000)
            self._reply({"run_id": rid, "display_name": body.get("display_name"), "state": "PENDING"})
        elif re.fullmatch(rf"{API}/runs/[^/]+:terminate", path):
            self._reply({})
        else:
            self._reply({"error": f"no route {path}"}, 404)


@pytest.fixture
def kfp_api():
    servers = []

    def start(*states: str) -> KFP:
        server = KFP(list(states))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def ci_env(tmp_path: Path, server: KFP) -> dict[str, str]:
    """What a CI job sets: the endpoint, the profile namespace, the token from a secret; an empty HOME so no local
    KFP context applies; the venv's commands on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KFP_", "AUDIOMCQ_"))}
    env.update(
        KFP_ENDPOINT=server.url,
        KFP_NAMESPACE="audiomcq",
        KFP_TOKEN=TOKEN,
        HOME=str(tmp_path / "home"),
        KFP_SERVICE_ACCOUNT="default-editor",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    return env


def build_json(tmp_path: Path) -> tuple[Path, str]:
    """A skaffold build output for this commit (only the train image built: the others keep their dev tags)."""
    ref = "registry.example.com/audiomcq/audiomcq-train:c0ffee@sha256:" + "b" * 64
    path = tmp_path / "build.json"
    path.write_text(
        json.dumps({"builds": [{"imageName": "registry.example.com/audiomcq/audiomcq-train", "tag": ref}]})
    )
    return path, ref


def submit_sh(tmp_path: Path, server: KFP, *extra: str) -> subprocess.CompletedProcess:
    build, _ = build_json(tmp_path)
    env = ci_env(tmp_path, server) | {
        "BUILD_JSON": str(build),
        "OUT_DIR": str(tmp_path / "dist"),
        "RUN_NAME": "ci-c0ffee",
        "RUN_TIMEOUT": "60",
    }
    cmd = [
        "bash",
        str(CI / "submit.sh"),
        "--param",
        "recipe=demo",
        "--param",
        "publish=s3://audiomcq/ci",
        "--param",
        'paradigms=["weak_to_strong"]',
        "--poll",
        "0.05",
        *extra,
    ]
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)


def submit_py(env: dict[str, str], package: Path, *args: str) -> subprocess.CompletedProcess:
    """examples/ci/submit.py alone, on an already compiled pipeline."""
    cmd = [sys.executable, str(CI / "submit.py"), str(package), "--poll", "0.05", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_ci_uploads_a_content_named_version_runs_it_and_waits_for_success(tmp_path, kfp_api):
    from audiomcq.pipelines.run import version_name

    server = kfp_api("PENDING", "RUNNING", "RUNNING", "SUCCEEDED")
    out = submit_sh(tmp_path, server)
    assert out.returncode == 0, out.stdout + out.stderr
    package = tmp_path / "dist" / "audiomcq-demo.yaml"
    _, ref = build_json(tmp_path)
    assert ref in package.read_text()  # compiled with the digests the build produced
    version = version_name("audiomcq-demo", package)
    assert re.fullmatch(r"audiomcq-demo-[0-9a-f]{12}", version)

    (created,) = server.calls("POST", f"{API}/pipelines")
    assert created["body"]["display_name"] == "audiomcq-demo"
    assert created["body"]["namespace"] == "audiomcq" and created["body"]["description"]
    (upload,) = server.calls("POST", f"{API}/pipelines/upload_version")
    assert upload["query"] == {
        "name": version,
        "pipelineid": "pipeline-1",
        "description": created["body"]["description"],
    }
    assert upload["body"]["uploadfile"] == package.read_bytes()  # exactly the compiled YAML
    (experiment,) = server.calls("POST", f"{API}/experiments")
    assert experiment["body"] == {"display_name": "audiomcq-ci", "namespace": "audiomcq"}
    (run,) = server.calls("POST", f"{API}/runs")
    assert run["body"]["pipeline_version_reference"] == {
        "pipeline_id": "pipeline-1",
        "pipeline_version_id": "version-1",
    }
    assert run["body"]["experiment_id"] == "experiment-1" and run["body"]["display_name"] == "ci-c0ffee"
    assert run["body"]["service_account"] == "default-editor"
    assert run["body"]["runtime_config"]["parameters"] == {
        "recipe": "demo",
        "publish": "s3://audiomcq/ci",
        "paradigms": ["weak_to_strong"],
    }
    polls = server.calls("GET", f"{API}/runs/run-1")
    assert len(polls) == 4  # until the terminal state, and not once more
    assert server.requests[-1]["path"] == f"{API}/runs/run-1"
    assert not server.calls("POST", f"{API}/runs/run-1:terminate")

    assert all(r["auth"] == f"Bearer {TOKEN}" for r in server.requests)  # authenticated, every request
    assert TOKEN not in out.stdout + out.stderr
    assert f"{server.url}/#/runs/details/run-1" in out.stdout
    assert "run run-1: SUCCEEDED" in out.stdout
    # The Kubernetes-native manifests name the same version: applying them after a rebuild makes a new one.
    docs = list(yaml.safe_load_all((tmp_path / "dist" / "audiomcq-demo.k8s.yaml").read_text()))
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "PipelineVersion"] == [version]


def test_ci_reuses_the_version_of_the_same_build_and_fails_with_the_run(tmp_path, kfp_api):
    server = kfp_api("RUNNING", "FAILED")
    assert submit_sh(tmp_path, server).returncode == 1
    first_uploads = len(server.calls("POST", f"{API}/pipelines/upload_version"))
    server.states = ["PENDING", "SUCCEEDED"]
    again = submit_sh(tmp_path, server)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already uploaded, reused" in again.stdout
    assert first_uploads == 1 and len(server.calls("POST", f"{API}/pipelines/upload_version")) == 1
    assert len(server.calls("POST", f"{API}/pipelines")) == 1
    (first, second) = server.calls("POST", f"{API}/runs")
    assert first["body"]["pipeline_version_reference"] == second["body"]["pipeline_version_reference"]
    # A new build (another digest) is another version of the same pipeline.
    build, _ = build_json(tmp_path)
    build.write_text(build.read_text().replace("b" * 64, "c" * 64))
    env = ci_env(tmp_path, server)
    compiled = tmp_path / "other"
    subprocess.run(
        ["audiomcq", "pipeline", "compile", "--images", str(build), "--out", str(compiled)],
        env=env,
        check=True,
        capture_output=True,
    )
    out = submit_py(env, compiled / "audiomcq-demo.yaml", "--experiment", "audiomcq-ci")
    assert out.returncode == 0, out.stdout + out.stderr
    names = [u["query"]["name"] for u in server.calls("POST", f"{API}/pipelines/upload_version")]
    assert len(set(names)) == 2 and len(server.calls("POST", f"{API}/pipelines")) == 1


@pytest.mark.parametrize(("states", "status"), [(("CANCELED",), 1), (("SKIPPED",), 1), (("RUNNING",), 2)])
def test_ci_fails_a_run_that_does_not_succeed_in_time(tmp_path, kfp_api, states, status):
    """Canceled and skipped runs fail the job; one still running at the timeout is terminated and fails it too."""
    server = kfp_api(*states)
    package = REPO / "pipelines" / "compiled" / "audiomcq-filter.yaml"
    out = submit_py(
        ci_env(tmp_path, server),
        package,
        "--experiment",
        "acf",
        "--timeout",
        "0.5",
        "--param",
        "data=s3://audiomcq/data/pool.jsonl",
    )
    assert out.returncode == status, out.stdout + out.stderr
    assert bool(server.calls("POST", f"{API}/runs/run-1:terminate")) is (status == 2)


def test_ci_stops_when_the_run_cannot_start(tmp_path, kfp_api):
    """An API that refuses (here: no experiments route) ends the job with status 3 and the endpoint named."""
    server = kfp_api("SUCCEEDED")
    env = ci_env(tmp_path, server) | {"KFP_ENDPOINT": f"{server.url}/missing"}
    package = REPO / "pipelines" / "compiled" / "audiomcq-filter.yaml"
    out = submit_py(env, package, "--experiment", "acf")
    assert out.returncode == 3 and f"{server.url}/missing: could not start" in out.stdout, out.stdout + out.stderr


def _workflow_steps() -> list[dict]:
    workflow = yaml.safe_load((CI / "github-actions.yaml").read_text())
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_the_ci_files_run_the_tested_script_with_the_token_from_a_secret():
    steps = _workflow_steps()
    (submit,) = [s for s in steps if "examples/ci/submit.sh" in s.get("run", "")]
    assert submit["env"]["KFP_TOKEN"] == "${{ secrets.KFP_TOKEN }}"  # by name; the value lives in the CI's store
    for step in steps:  # third-party actions pinned by commit, never by a movable tag
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    gitlab = yaml.safe_load((CI / "gitlab-ci.yaml").read_text())
    scripts = [line for job in gitlab.values() if isinstance(job, dict) for line in job.get("script", [])]
    assert any("examples/ci/submit.sh" in line for line in scripts)
    assert "KFP_TOKEN" not in json.dumps(gitlab.get("variables", {}))  # a masked CI/CD variable, not in the file
    lint = subprocess.run(
        [sys.executable, "-m", "yamllint", "-c", str(REPO / ".yamllint"), str(CI)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
