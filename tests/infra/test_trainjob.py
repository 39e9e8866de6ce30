"""Multi-node training as a Kubeflow Trainer TrainJob: rendered by `train … --emit-trainjob`, valid against the CRD."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO

from audiomcq.cli import main
from audiomcq.errors import AudioMCQError
from audiomcq.infra.k8s.trainjob import Cluster, render

CRD = REPO.parent / "shared" / "schemas" / "kubeflow-trainer" / "trainer.kubeflow.org_trainjobs.yaml"


def _schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def test_emitted_trainjob_validates_against_the_crd_and_runs_the_same_command(tmp_path, capsys):
    out = tmp_path / "trainjob.yaml"
    args = [
        "train",
        "run",
        "--recipe",
        "weak_to_strong",
        "--model",
        "s3://models/omni-7b",
        "--data",
        "acf.jsonl",
        "--audio-root",
        "/data/audio",
        "--out",
        "s3://runs/w2s",
        "--nnodes",
        "4",
        "--nproc-per-node=8",
        "--emit-trainjob",
        str(out),
        "--image",
        "registry/audiomcq-train@sha256:abc",
    ]
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


RUNTIME_CRD = (
    REPO.parent / "shared" / "schemas" / "kubeflow-trainer" / "trainer.kubeflow.org_clustertrainingruntimes.yaml"
)
URIS = {
    "model": "s3://models/omni-7b",
    "labelled": "s3://data/acf/labelled.jsonl",
    "audio_root": "s3://data/audio",
    "selection": "s3://data/held-out.jsonl",
    "publish": "s3://runs/w2s-0001",
}
TWO_NODES = ["launch.nodes=2", "launch.gpus_per_node=4"]


def _runtime() -> dict:
    """The torch-distributed ClusterTrainingRuntime as a cluster has it (trimmed), valid against its CRD."""
    node = {
        "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
        "spec": {"template": {"spec": {"containers": [{"name": "node", "image": "pytorch/pytorch:2.7.1"}]}}},
    }
    runtime = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": "torch-distributed", "labels": {"trainer.kubeflow.org/framework": "torch"}},
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {"numProcPerNode": "auto"}},
            "template": {"spec": {"replicatedJobs": [{"name": "node", "template": node}]}},
        },
    }
    crd = yaml.safe_load(RUNTIME_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    jsonschema.validate(runtime, version["schema"]["openAPIV3Schema"])
    return runtime


def _controller(kube_api, outcome: str, log: str = ""):
    """Plays the Trainer controller and kubelet: each new TrainJob gets one running pod per node, then ends with
    ``outcome`` (Complete or Failed), node-0 leaving ``log``."""

    def hook(event, job):
        if event != "ADDED":
            return
        name, ns = job["metadata"]["name"], job["metadata"]["namespace"]
        for i in range(job["spec"]["trainer"]["numNodes"]):
            labels = {
                "jobset.sigs.k8s.io/jobset-name": name,
                "jobset.sigs.k8s.io/replicatedjob-name": "node",
                "batch.kubernetes.io/job-completion-index": str(i),
            }
            phase = "Succeeded" if outcome == "Complete" else "Failed"
            kube_api.add(
                "pods",
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": f"{name}-node-0-{i}", "namespace": ns, "labels": labels},
                    "spec": {"containers": [{"name": "node", "image": job["spec"]["trainer"]["image"]}]},
                    "status": {"phase": phase},
                },
            )
        kube_api.logs[(ns, f"{name}-node-0-0")] = log
        reason = {"Complete": ("JobSetCompleted", "jobset completed"), "Failed": ("JobSetFailed", "node-1 OOMKilled")}
        job["status"] = {
            "conditions": [
                {
                    "type": outcome,
                    "status": "True",
                    "reason": reason[outcome][0],
                    "message": reason[outcome][1],
                    "lastTransitionTime": "2026-11-27T00:00:00Z",
                }
            ]
        }

    kube_api.add("clustertrainingruntimes", _runtime())
    kube_api.on("trainjobs", hook)


def test_a_multi_node_recipe_runs_as_a_trainjob_that_the_step_follows(kube_api):
    from audiomcq.stages.train import launch_nodes, train_on_cluster

    _controller(kube_api, "Complete")
    assert launch_nodes("weak_to_strong", []) == 1 and launch_nodes("weak_to_strong", TWO_NODES) == 2
    run = train_on_cluster(
        **URIS,
        recipe="weak_to_strong",
        overrides=TWO_NODES,
        paradigm="weak_to_strong",
        image="registry/audiomcq-train@sha256:abc",
    )
    assert run == URIS["publish"]
    ((plural, ns, name),) = [k for k in kube_api.objects if k[0] == "trainjobs"]
    job = kube_api.get("trainjobs", name, ns)
    jsonschema.validate({k: v for k, v in job.items() if k != "status"}, _schema())
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 4
    (patch,) = job["spec"]["runtimePatches"]  # onto the tainted GPU pool
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert (
        pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    )
    assert {e["name"] for e in trainer["env"]} >= {"AUDIOMCQ_S3_ENDPOINT", "AUDIOMCQ_S3_SECURE", "AUDIOMCQ_S3_REGION"}
    assert (
        trainer["args"][:3] == ["run", "--model", URIS["model"]]
        and "allocation.paradigm=weak_to_strong" in trainer["args"]
    )
    assert trainer["args"][-2:] == ["--nnodes=2", "--nproc-per-node=4"] and URIS["selection"] in trainer["args"]
    # a retried step (its pod lost) follows the job it started instead of starting another
    before = job["metadata"]["resourceVersion"]
    assert (
        train_on_cluster(**URIS, recipe="weak_to_strong", overrides=TWO_NODES, paradigm="weak_to_strong", image="x")
        == run
    )
    assert [k for k in kube_api.objects if k[0] == "trainjobs"] == [(plural, ns, name)]
    assert kube_api.get("trainjobs", name, ns)["metadata"]["resourceVersion"] == before
    # a job of that name with other arguments belongs to another run: refused, never followed as if it were ours
    with pytest.raises(AudioMCQError, match="exists with other arguments"):
        train_on_cluster(
            **URIS,
            recipe="weak_to_strong",
            overrides=[*TWO_NODES, "sft.trainer_args.max_steps=5"],
            paradigm="weak_to_strong",
            image="x",
        )


def test_a_failed_trainjob_fails_the_step_with_its_reason_and_log(kube_api):
    from audiomcq.stages.train import train_on_cluster

    _controller(kube_api, "Failed", log="step 12\ntorch.OutOfMemoryError: CUDA out of memory\n")
    with pytest.raises(AudioMCQError, match=r"(?s)failed: Failed=True \(JobSetFailed: node-1 OOMKilled\).*CUDA out"):
        train_on_cluster(**URIS, recipe="weak_to_strong", overrides=TWO_NODES, paradigm="weak_to_strong", image="x")


def test_a_multi_node_run_refuses_local_inputs_before_submitting(kube_api):
    from audiomcq.stages.train import train_on_cluster

    with pytest.raises(AudioMCQError, match=r"\['labelled'\] must be s3://"):
        train_on_cluster(
            **{**URIS, "labelled": "/data/acf.jsonl"},
            recipe="weak_to_strong",
            overrides=TWO_NODES,
            paradigm="weak_to_strong",
            image="x",
        )
    assert not [k for k in kube_api.objects if k[0] == "trainjobs"]


def test_each_node_fetches_s3_inputs_once_and_relaunches_on_the_local_copies(s3, tiny_omni, tmp_path, monkeypatch):
    """What a TrainJob node does before torchrun: the model, records and audio come down once, and the command the
    ranks run names the local copies (so ranks never race to download the same files)."""
    import argparse

    from audiomcq.cli.train import _localize_inputs
    from audiomcq.infra import storage

    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "pool.jsonl").write_text("{}\n")
    storage.publish(tiny_omni, "s3://data/models/base")
    storage.publish(tmp_path / "audio", "s3://data/audio")
    s3.fput_object("data", "acf/pool.jsonl", str(tmp_path / "pool.jsonl"))
    argv = [
        "train",
        "run",
        "--model",
        "s3://data/models/base",
        "--data=s3://data/acf/pool.jsonl",
        "--audio-root",
        "s3://data/audio",
        "--out",
        "s3://data/runs/x",
        "--nnodes=2",
    ]
    args = argparse.Namespace(
        model=argv[3], data="s3://data/acf/pool.jsonl", selection=None, audio_root=argv[6], argv=list(argv)
    )
    _localize_inputs(args)
    assert (Path(args.model) / "config.json").is_file() and Path(args.data).read_text() == "{}\n"
    assert (Path(args.audio_root) / "a.wav").read_bytes() == b"RIFF"
    assert args.argv == [
        "train",
        "run",
        "--model",
        args.model,
        f"--data={args.data}",
        "--audio-root",
        args.audio_root,
        "--out",
        "s3://data/runs/x",
        "--nnodes=2",
    ]


# --- Pod Security "restricted" for the node pods --------------------------------------------------------------------
def _merge(base, patch):
    """``patch`` applied onto ``base`` as Kubeflow Trainer applies runtime patches: objects merged key by key,
    lists of named items (containers, volumes, mounts, env) merged by name, anything else replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{key: _merge(base.get(key), value) for key, value in patch.items()}}
    named = (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    )
    if named:
        merged = {item["name"]: item for item in base}
        for item in patch:
            merged[item["name"]] = _merge(merged.get(item["name"]), item)
        return list(merged.values())
    return patch


def test_trainjob_node_pods_pass_pod_security_restricted_with_a_read_only_root_filesystem(monkeypatch):
    """The runtime patch gives the node pods the images' non-root user, no privilege escalation, no capabilities,
    RuntimeDefault seccomp and a read-only root filesystem, and emptyDirs where training writes: $HOME, /tmp and
    the staging area AUDIOMCQ_STAGING names. The TrainJob holds only fields the CRD declares (strictly: one it does
    not would be pruned and do nothing); the node pod, the torch runtime's node job with the patch and the
    trainer's image and resources, is a valid Pod that passes "restricted" where the runtime's alone does not."""
    from deploy.k8s_checks import pod_security_problems, schema_problems

    from audiomcq.infra import storage

    job = render("secure", ["run", "--out", "s3://runs/x"], Cluster(nodes=2, gpus_per_node=4))
    jsonschema.validate(job, _schema())
    assert schema_problems([job]) == []
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    (runtime_node,) = _runtime()["spec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == runtime_node["name"]
    trainer = job["spec"]["trainer"]  # what the controller puts on the node container itself
    from_trainer = {
        "containers": [{"name": "node", "image": trainer["image"], "resources": trainer["resourcesPerNode"]}]
    }
    runtime_pod = _merge(runtime_node["template"]["spec"]["template"]["spec"], from_trainer)
    pod = _merge(runtime_pod, node["template"]["spec"]["template"]["spec"])
    as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "secure-node-0-0"}}
    assert pod_security_problems([{**as_pod, "spec": runtime_pod}]), "the runtime alone would be refused"
    assert schema_problems([{**as_pod, "spec": pod}]) == []
    assert pod_security_problems([{**as_pod, "spec": pod}]) == []
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}  # the GPU pool placement is still there
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["runAsUser"] == context["runAsGroup"] == 10001
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    base = (REPO / "images" / "base" / "Dockerfile").read_text()  # the user and HOME the train image runs with
    users = [
        line for line in (REPO / "images" / "train" / "Dockerfile").read_text().splitlines() if line.startswith("USER")
    ]
    assert "HOME=/home/audiomcq" in base and "--uid 10001 --user-group" in base and users[-1] == "USER 10001:10001"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    staging = {e["name"]: e.get("value") for e in container["env"]}["AUDIOMCQ_STAGING"]
    for path in ("/home/audiomcq", "/tmp", staging):
        assert set(mounts[path]) == {"name", "emptyDir"}, path
    # where a node's `audiomcq train` writes: the S3 inputs it localizes and the run staged before upload
    monkeypatch.setenv("AUDIOMCQ_STAGING", staging)
    assert storage.cache_dir("s3://runs/x").is_relative_to(staging)
