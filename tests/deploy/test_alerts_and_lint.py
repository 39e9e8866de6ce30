"""The deploy files' hygiene and the alerts, checked offline.

No secret value is committed under manifests/, the compiled pipelines, images/ or skaffold.yaml; the YAML is
lint-clean; the alerts pass ``promtool check rules`` and their unit tests, and use only series the code (or the
platform) exports. Each check is also shown to reject a planted mistake.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from deploy.k8s_checks import MANIFESTS

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(not PROMTOOL, reason="promtool is not installed (Debian package prometheus)")


# --- secrets ------------------------------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "an AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "an AWS secret access key": re.compile(r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a password": re.compile(r"(?i)\bpassword[\"']?\s*:\s*[\"']?[^\s\"'{}<>$][^\s\"']*"),
    "a Secret with values": re.compile(r"(?m)^kind:\s*Secret\s*$(?=[\s\S]*?^(?:data|stringData):)"),
}
SCANNED = ("manifests", "pipelines/compiled", "images", "skaffold.yaml")


def secret_findings(text: str) -> list[str]:
    return [what for what, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def test_no_secret_value_is_committed():
    paths = [p for root in SCANNED for p in ([REPO / root] if (REPO / root).is_file() else (REPO / root).rglob("*"))]
    files = [p for p in paths if p.is_file() and "__pycache__" not in p.parts]
    assert len(files) > 20
    for path in files:
        text = path.read_text(errors="replace")
        assert secret_findings(text) == [], path
        if path.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "Secret":
                    assert not doc.get("data") and not doc.get("stringData"), path


def test_secret_scan_finds_planted_values():
    key_id = "AKIA" + "IOSFODNN7" + "EXAMPLE"  # AWS's documentation example, assembled so this file holds no key
    secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    planted = {
        "an AWS access key id": f"env:\n  - name: AWS_ACCESS_KEY_ID\n    value: {key_id}\n",
        "an AWS secret access key": f"AWS_SECRET_ACCESS_KEY={secret}\n",
        "a private key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE\n",
        "a password": "auth:\n  password: hunter2\n",
        "a Secret with values": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: aGk=\n",
    }
    for what, text in planted.items():
        assert what in secret_findings(text), what
    assert secret_findings("password: ''\npasswordFrom: {secretKeyRef: {name: s}}\nkind: Secret\n") == []


# --- lint and alerts ---------------------------------------------------------------------------------------------


def yamllint(*paths: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "yamllint", "-c", str(REPO / ".yamllint"), "-f", "parsable", *map(str, paths)]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_yaml_is_lint_clean(tmp_path):
    out = yamllint(MANIFESTS, REPO / "skaffold.yaml", REPO / ".yamllint")
    assert out.returncode == 0, out.stdout + out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nb:   [1,2]   \n")
    out = yamllint(bad)
    assert out.returncode != 0 and "key-duplicates" in out.stdout and "trailing-spaces" in out.stdout


def _rules_and_tests(tmp_path: Path) -> tuple[Path, Path]:
    """The PrometheusRule's groups as a Prometheus rules file, beside a copy of its unit tests."""
    rule = yaml.safe_load((MANIFESTS / "base" / "monitoring" / "alerts.yaml").read_text())
    rules = tmp_path / "alerts.rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    tests = tmp_path / "alerts.test.yaml"
    shutil.copy(MANIFESTS / "base" / "monitoring" / "tests" / "alerts.test.yaml", tests)
    return rules, tests


def promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *map(str, args)], check=False, capture_output=True, text=True, timeout=60, cwd=cwd
    )


@needs_promtool
def test_alert_rules_check_and_pass_their_unit_tests(tmp_path):
    rules, tests = _rules_and_tests(tmp_path)
    out = promtool("check", "rules", rules, cwd=tmp_path)
    assert out.returncode == 0 and "SUCCESS: 9 rules found" in out.stdout, out.stdout + out.stderr
    out = promtool("test", "rules", tests, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # every alert has a unit test that expects it to fire
    tested = {
        t["alertname"]
        for case in yaml.safe_load(tests.read_text())["tests"]
        for t in case["alert_rule_test"]
        if t.get("exp_alerts")
    }
    alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    assert tested == alerts


@needs_promtool
def test_promtool_rejects_planted_mistakes(tmp_path):
    rules, tests = _rules_and_tests(tmp_path)
    text = rules.read_text()
    rules.write_text(text.replace("> 0.05", "> 0.5"))  # an error-rate threshold that would never fire
    out = promtool("test", "rules", tests, cwd=tmp_path)
    assert out.returncode != 0 and "AudiomcqServeErrorRate" in out.stdout + out.stderr
    rules.write_text(
        text.replace("max_over_time(audiomcq_train_reward[2h])", "max_over_time(audiomcq_train_reward)", 1)
    )
    out = promtool("check", "rules", rules, cwd=tmp_path)
    assert out.returncode != 0


def _metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression (identifiers followed by a selector, range or end of a term)."""
    keywords = {
        "by",
        "on",
        "unless",
        "and",
        "or",
        "without",
        "ignoring",
        "bool",
        "time",
        "rate",
        "sum",
        "max",
        "max_over_time",
        "histogram_quantile",
        "le",
    }
    names = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[|\)|\s|$)", re.sub(r"\{[^}]*\}", "{}", expr)))
    labels = set(re.findall(r"\(([a-z_, ]+)\)", expr))
    label_names = {n.strip() for group in labels for n in group.split(",")}
    return {n for n in names if n not in keywords and n not in label_names and not n[0].isdigit()}


def exported_metric_names() -> set[str]:
    """Series our code exports, and the third-party ones the alerts rely on (with where they come from)."""
    import importlib.util

    from prometheus_client.metrics import MetricWrapperBase

    import audiomcq.serve.metrics as serve_metrics
    from audiomcq.infra.metrics import metric_name

    names = set()
    for metric in vars(serve_metrics).values():
        kind = metric._type if isinstance(metric, MetricWrapperBase) else None
        if kind == "counter":
            names.add(metric._name + "_total")
        elif kind == "histogram":
            names.update(metric._name + s for s in ("_bucket", "_sum", "_count"))

    def source(module: str) -> str:
        return Path(importlib.util.find_spec(module).origin).read_text()

    # training: the keys trl's GRPO trainer and transformers' Trainer log, pushed as audiomcq_train_<key>
    logged = {
        "reward": "trl.trainer.grpo_trainer",
        "frac_reward_zero_std": "trl.trainer.grpo_trainer",
        "train_loss": "transformers.trainer",
    }
    for key, module in logged.items():
        assert f'"{key}"' in source(module), f"{module} no longer logs {key}"
        names.add(metric_name("audiomcq_train", key))
    assert "request_predict_seconds" in source("kserve.metrics")
    names.update({"request_predict_seconds_bucket", "up", "push_time_seconds"})  # kserve; Prometheus; Pushgateway
    names.add("vllm:e2e_request_latency_seconds_bucket")  # vLLM's request histogram (not installed here)
    return names


def test_alerts_use_series_the_code_exports():
    rule = yaml.safe_load((MANIFESTS / "base" / "monitoring" / "alerts.yaml").read_text())
    used = {n for g in rule["spec"]["groups"] for r in g["rules"] for n in _metric_names(r["expr"])}
    assert {"audiomcq_serve_requests_total", "audiomcq_train_reward", "push_time_seconds"} <= used
    assert used <= exported_metric_names(), used - exported_metric_names()
    assert "audiomcq_serve_request_total" not in exported_metric_names()  # a misspelling is caught
