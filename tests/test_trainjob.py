"""Multi-node training as a Kubeflow Trainer TrainJob: rendered by `train … --emit-trainjob`, valid against the CRD."""

from __future__ import annotations

import jsonschema
import pytest
import yaml
from conftest import REPO

from audiomcq.cli import main
from audiomcq.errors import AudioMCQError
from audiomcq.trainjob import Cluster, render

CRD = REPO.parent / "shared" / "schemas" / "kubeflow-trainer" / "trainer.kubeflow.org_trainjobs.yaml"


def _schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def test_emitted_trainjob_validates_against_the_crd_and_runs_the_same_command(tmp_path, capsys):
    out = tmp_path / "trainjob.yaml"
    args = ["train", "run", "--recipe", "weak_to_strong", "--model", "s3://models/omni-7b", "--data", "acf.jsonl",
            "--audio-root", "/data/audio", "--out", "s3://runs/w2s", "--nnodes", "4", "--nproc-per-node=8",
            "--emit-trainjob", str(out), "--image", "registry/audiomcq-train@sha256:abc"]  # fmt: skip
    assert main(args) == 0
    job = yaml.safe_load(out.read_text())
    jsonschema.validate(job, _schema())
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 8
    assert trainer["image"] == "registry/audiomcq-train@sha256:abc"
    assert trainer["command"] == ["audiomcq", "train"]
    assert trainer["args"][:2] == ["run", "--recipe"] and "--emit-trainjob" not in trainer["args"]
    assert trainer["args"][-2:] == ["--nnodes=4", "--nproc-per-node=8"] and "--image" not in trainer["args"]
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in trainer["env"] if "secretKeyRef" in e["valueFrom"]}
    assert secrets == {"audiomcq-s3"} and "value" not in str(trainer["env"]).replace("valueFrom", "")
    assert job["metadata"]["name"] == "audiomcq-run-w2s" and "TrainJob audiomcq-run-w2s" in capsys.readouterr().out


def test_the_schema_check_catches_a_broken_trainjob():
    job = render("ok-name", ["sft"], Cluster(nodes=2, gpus_per_node=4))
    jsonschema.validate(job, _schema())
    job["spec"]["trainer"]["numNodes"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, _schema())
    with pytest.raises(AudioMCQError, match="DNS label"):
        render("Bad_Name", ["sft"])
