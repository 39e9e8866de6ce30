"""Upload a compiled pipeline to Kubeflow Pipelines as a version named by its content, run it, and wait for the end.

    python examples/ci/submit.py dist/audiomcq-demo.yaml --experiment audiomcq-ci --run-name ci-1a2b3c \
        --timeout 18000 --param recipe=demo --param publish=s3://audiomcq/ci

A CI job calls this after ``audiomcq pipeline compile --images build.json`` (``examples/ci/submit.sh`` does both).
KFP versions are immutable, so the version is named ``<pipeline>-<sha256 of the YAML, 12 hex>``: a rebuild with new
image digests gets a new version, a rerun of the same commit reuses its version.

Environment:
    KFP_ENDPOINT         the KFP API, e.g. https://kubeflow.example.com/pipeline (required)
    KFP_NAMESPACE        the profile namespace of a multi-user KFP; unset for a standalone one
    KFP_TOKEN            a bearer token for the API, from a CI secret (another variable: --token-env); never printed
    KFP_TOKEN_FILE       without a token: a projected service-account token file, re-read on every request
    KFP_SERVICE_ACCOUNT  the account the run's pods use (default: the backend's)
    KFP_UI_ENDPOINT      where the UI is, when not at KFP_ENDPOINT (for the printed run URL)

Exit status: 0 the run succeeded; 1 it failed, was canceled or skipped; 2 it did not end within --timeout (it is
then terminated); 3 it could not be started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("submit")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("package", type=Path, help="the compiled pipeline (IR YAML)")
    p.add_argument("--experiment", required=True, help="KFP experiment (created when missing)")
    p.add_argument("--run-name", help="the run's name (default: the version's name)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=JSON", help="a pipeline argument")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait for the run (default 6 h)")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between two looks at the run")
    p.add_argument("--token-env", default="KFP_TOKEN", help="the variable holding the bearer token")
    return p.parse_args(argv)


def arguments(pairs: list[str]) -> dict[str, Any]:
    """``KEY=JSON`` pairs as pipeline arguments: JSON when the value parses (lists, dicts, numbers), else text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--param {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def connect(token_env: str) -> Any:
    """A KFP client for ``KFP_ENDPOINT``: bearer token from ``token_env``, else the SDK's projected-token
    credentials from ``KFP_TOKEN_FILE``, else none (a port-forward or an API without authentication)."""
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    host = os.environ.get("KFP_ENDPOINT")
    if not host:
        raise SystemExit("KFP_ENDPOINT is not set (the KFP API, e.g. https://kubeflow.example.com/pipeline)")
    token = os.environ.get(token_env) or None
    token_file = os.environ.get("KFP_TOKEN_FILE")
    credentials = ServiceAccountTokenVolumeCredentials(token_file) if token_file and not token else None
    with warnings.catch_warnings():  # the client warns about old API servers on every construction
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(
            host=host,
            existing_token=token,
            credentials=credentials,
            namespace=os.environ.get("KFP_NAMESPACE") or "kubeflow",
        )


def _by_name(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def pipeline_id(client: Any, name: str, description: str, namespace: str | None) -> str:
    """The pipeline ``name``'s id, creating it (without a version) when it is missing."""
    from kfp_server_api import V2beta1Pipeline

    found = client.list_pipelines(filter=_by_name(name), namespace=namespace, page_size=2).pipelines or []
    if found:
        return found[0].pipeline_id
    created = client.pipelines.pipeline_service_create_pipeline(
        pipeline=V2beta1Pipeline(display_name=name, description=description, namespace=namespace)
    )
    log.info("pipeline %s: created", name)
    return created.pipeline_id


def version_id(client: Any, pipeline: str, version: str, package: Path, description: str) -> str:
    """The id of the pipeline's version ``version``, uploading ``package`` under that name when it is missing (a
    concurrent job that uploaded it first is fine: the name is the content)."""
    from kfp_server_api import ApiException

    def lookup() -> str | None:
        found = client.list_pipeline_versions(pipeline, filter=_by_name(version), page_size=2).pipeline_versions
        return found[0].pipeline_version_id if found else None

    existing = lookup()
    if existing:
        log.info("version %s: already uploaded, reused", version)
        return existing
    try:
        uploaded = client.upload_pipeline_version(str(package), version, pipeline_id=pipeline, description=description)
    except ApiException:
        existing = lookup()
        if existing:
            return existing
        raise
    log.info("version %s: uploaded", version)
    return uploaded.pipeline_version_id


def wait(client: Any, run_id: str, timeout: float, poll: float) -> str | None:
    """The run's terminal state, or None when it has not ended within ``timeout`` seconds."""
    deadline, state = time.monotonic() + timeout, None
    while True:
        run = client.get_run(run_id)
        if run.state != state:
            state = run.state
            log.info("run %s: %s", run_id, state)
        if state in TERMINAL:
            if run.error and getattr(run.error, "message", None):
                log.error("run %s: %s", run_id, run.error.message)
            return state
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(poll, left))


def main(argv: list[str] | None = None) -> int:
    """Upload, run, wait; the exit status says how the run ended."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from kfp_server_api import ApiException
    from urllib3.exceptions import HTTPError

    from audiomcq.pipelines.run import version_name

    args = parse_args(argv)
    info = next(yaml.safe_load_all(args.package.read_text()))["pipelineInfo"]
    name, description = info["name"], info.get("description", "")
    version = version_name(name, args.package)
    namespace = os.environ.get("KFP_NAMESPACE") or None
    client = connect(args.token_env)
    try:
        pipeline = pipeline_id(client, name, description, namespace)
        version_ref = version_id(client, pipeline, version, args.package, description)
        experiment = client.create_experiment(args.experiment, namespace=namespace)
        run = client.run_pipeline(
            experiment.experiment_id,
            args.run_name or version,
            pipeline_id=pipeline,
            version_id=version_ref,
            params=arguments(args.param),
            service_account=os.environ.get("KFP_SERVICE_ACCOUNT") or None,
        )
    except (ApiException, HTTPError, ValueError) as err:  # what the client raises: say where, then stop
        log.error("%s: could not start %s: %s: %s", os.environ["KFP_ENDPOINT"], version, type(err).__name__, err)
        return 3
    ui = (os.environ.get("KFP_UI_ENDPOINT") or os.environ["KFP_ENDPOINT"]).rstrip("/")
    log.info("run %s of %s: %s/#/runs/details/%s", run.run_id, version, ui, run.run_id)
    state = wait(client, run.run_id, args.timeout, args.poll)
    if state is None:
        log.error("run %s: not finished after %.0f s; terminating it", run.run_id, args.timeout)
        client.terminate_run(run.run_id)
        return 2
    return 0 if state == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
