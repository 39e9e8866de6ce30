"""The NetworkPolicies, checked offline by evaluating them as the NetworkPolicy API specifies.

Egress is denied by default and opened per workload to exactly what it needs: pipeline steps, TrainJob nodes and
predictors reach DNS, the Pushgateway, S3 and the platform services they call; the servers that need nothing
outside (the Pushgateway, the S3 store) cannot reach the outside. The check is also shown to reject planted mistakes.
"""

from __future__ import annotations

import ipaddress

import pytest
from deploy.k8s_checks import NAMESPACE, OVERLAYS, named, needs_kubectl, rendered

# --- network policies ---------------------------------------------------------------------------------------------


class Peer:
    """One end of a connection: a pod (its namespace and labels) or an address outside the cluster."""

    def __init__(self, what: str, namespace: str | None = None, labels: dict | None = None, ip: str = "") -> None:
        self.what, self.namespace, self.labels, self.ip = what, namespace, labels or {}, ip


def _selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels, matchExpressions) against labels; an empty selector selects everything."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, values = e["key"], e.get("values", [])
        if {
            "In": labels.get(key) not in values,
            "NotIn": labels.get(key) in values if key in labels else False,
            "Exists": key not in labels,
            "DoesNotExist": key in labels,
        }[e["operator"]]:
            return False
    return True


def _in_block(ip: str, block: dict) -> bool:
    address = ipaddress.ip_address(ip)
    inside = address in ipaddress.ip_network(block["cidr"])
    return inside and not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))


def _reaches(rule: dict, dest: Peer, port: int, protocol: str, namespace: str) -> bool:
    """Whether one egress rule of a policy in ``namespace`` lets traffic to ``dest``:``port``/``protocol`` out."""
    ports = rule.get("ports")
    if ports and not any(
        p.get("protocol", "TCP") == protocol and p.get("port", port) <= port <= p.get("endPort", p.get("port", port))
        for p in ports
    ):
        return False
    if "to" not in rule:  # a rule without peers reaches every destination on its ports
        return True
    for to in rule["to"]:
        if "ipBlock" in to:
            if dest.ip and _in_block(dest.ip, to["ipBlock"]):
                return True
            continue
        if dest.namespace is None:  # pod and namespace selectors only ever select pods
            continue
        ns = to.get("namespaceSelector")
        in_ns = (
            dest.namespace == namespace
            if ns is None
            else _selects(ns, {"kubernetes.io/metadata.name": dest.namespace})
        )
        if in_ns and _selects(to.get("podSelector", {}), dest.labels):
            return True
    return False


def egress_allowed(objs: list[dict], pod: Peer, dest: Peer, port: int, protocol: str = "TCP") -> bool:
    """What the NetworkPolicy API says a network plugin lets through: a pod no egress policy selects may go
    anywhere; a selected one only where a rule of one of the policies selecting it lets it."""
    policies = [
        o
        for o in objs
        if o["kind"] == "NetworkPolicy"
        and "Egress" in o["spec"].get("policyTypes", [])
        and o["metadata"].get("namespace", NAMESPACE) == pod.namespace
        and _selects(o["spec"]["podSelector"], pod.labels)
    ]
    if not policies:
        return True
    return any(
        _reaches(rule, dest, port, protocol, pod.namespace) for p in policies for rule in p["spec"].get("egress", [])
    )


def _template_labels(objs: list[dict], kind: str, name: str) -> dict:
    return named(objs, kind, name)["spec"]["template"]["metadata"].get("labels", {})


def egress_problems(objs: list[dict]) -> list[str]:
    """Egress is denied unless allowed, every workload reaches what it needs, and the servers that need nothing
    outside (the Pushgateway, the S3 store) cannot reach the outside. The platform's pods are named by the labels
    their controllers set (KFP's v2_component, JobSet's jobset-name, KServe's inferenceservice)."""
    found = []
    deny = [
        o
        for o in objs
        if o["kind"] == "NetworkPolicy"
        and o["spec"]["podSelector"] == {}
        and o["spec"].get("policyTypes") == ["Egress"]
        and not o["spec"].get("egress")
    ]
    if not deny:
        found.append("no default-deny egress policy")
    dns = Peer("DNS", "kube-system", {"k8s-app": "kube-dns"})
    push = Peer("the Pushgateway", NAMESPACE, _template_labels(objs, "Deployment", "audiomcq-pushgateway"))
    internet = Peer("S3 or an LLM API outside the cluster", ip="203.0.113.10")
    api = Peer("the Kubernetes API", ip="10.0.0.1")
    kfp = Peer("the KFP API", "kubeflow", {"app": "ml-pipeline"})
    mlmd = Peer("ML Metadata", "kubeflow", {"component": "metadata-grpc-server"})
    llm = Peer("the in-cluster LLM endpoint", "llm", {"app": "vllm"})
    gateway = Peer("the serving gateway", "istio-system", {"app": "knative-local-gateway"})
    istiod = Peer("istiod", "istio-system", {"app": "istiod"})
    step = Peer("a pipeline step", NAMESPACE, {"pipelines.kubeflow.org/v2_component": "true"})
    node = Peer("a TrainJob node", NAMESPACE, {"jobset.sigs.k8s.io/jobset-name": "w2s-grpo"})
    predictor = Peer("a predictor", NAMESPACE, {"serving.kserve.io/inferenceservice": "audiomcq"})
    pushgateway = Peer("the Pushgateway", NAMESPACE, push.labels)
    peer = Peer("another node of the job", NAMESPACE, node.labels)
    needs = [(p, dns, 53, "UDP") for p in (step, node, predictor)] + [(p, dns, 53, "TCP") for p in (step, node)]
    needs += [(p, push, 9091, "TCP") for p in (step, node)]
    needs += [(p, istiod, 15012, "TCP") for p in (predictor, pushgateway)]
    needs += [
        (step, dest, port, "TCP")
        for dest, port in (
            (kfp, 8887),
            (mlmd, 8080),
            (internet, 443),
            (api, 6443),
            (api, 443),
            (llm, 8000),
            (gateway, 8081),
        )
    ]
    needs += [(node, internet, 443, "TCP"), (node, peer, 29500, "TCP"), (predictor, internet, 443, "TCP")]
    never = [(pushgateway, internet, 443), (predictor, kfp, 8887), (predictor, api, 6443), (node, kfp, 8887)]
    if any(o["kind"] == "Deployment" and o["metadata"]["name"] == "audiomcq-seaweedfs" for o in objs):
        store = Peer("the S3 store", NAMESPACE, _template_labels(objs, "Deployment", "audiomcq-seaweedfs"))
        bucket = Peer("the bucket Job", NAMESPACE, _template_labels(objs, "Job", "audiomcq-seaweedfs-bucket"))
        needs += [(p, store, 8333, "TCP") for p in (step, node, predictor, bucket)] + [(bucket, dns, 53, "UDP")]
        needs += [(store, store, 19333, "TCP")]  # its master's gRPC port, on its own address
        never += [(store, internet, 443), (bucket, internet, 443)]
    for pod, dest, port, protocol in needs:
        if not egress_allowed(objs, pod, dest, port, protocol):
            found.append(f"{pod.what} cannot reach {dest.what} ({port}/{protocol})")
    for pod, dest, port in never:
        if egress_allowed(objs, pod, dest, port):
            found.append(f"{pod.what} can reach {dest.what} ({port}/TCP)")
    return found


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_is_denied_by_default_and_opened_per_workload(overlay):
    assert egress_problems(rendered(overlay)) == []


@needs_kubectl
def test_egress_check_rejects_planted_mistakes():
    """Without the pipeline steps' policy the steps reach nothing but DNS and the Pushgateway; without the
    default deny the check says so; a predictor policy that selects every pod opens the outside to the
    Pushgateway."""
    objs = rendered("dev")
    without = [o for o in objs if o["metadata"]["name"] != "audiomcq-egress-pipeline-steps"]
    found = egress_problems(without)
    for what in ("the KFP API", "ML Metadata", "S3 or an LLM API", "the Kubernetes API", "the serving gateway"):
        assert any(f.startswith(f"a pipeline step cannot reach {what}") for f in found), what
    assert not any("the Pushgateway" in f or "DNS" in f for f in found)
    assert egress_problems([o for o in objs if o["metadata"]["name"] != "audiomcq-default-deny-egress"]) == [
        "no default-deny egress policy"
    ]
    named(objs, "NetworkPolicy", "audiomcq-egress-predictors")["spec"]["podSelector"] = {}
    assert "the Pushgateway can reach S3 or an LLM API outside the cluster (443/TCP)" in egress_problems(objs)
    assert egress_allowed(objs, Peer("x", "elsewhere"), Peer("y", ip="203.0.113.10"), 443)  # no policy: open
