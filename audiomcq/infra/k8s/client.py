"""One way to reach the Kubernetes API, and the few custom-object calls the platform makes.

Credentials, in order:

1. ``AUDIOMCQ_KUBE_HOST`` (``https://host:port``) with a bearer token read from the file named by
   ``AUDIOMCQ_KUBE_TOKEN_FILE`` (re-read on every request, so a rotated projected token keeps working) and the CA
   bundle named by ``AUDIOMCQ_KUBE_CA_FILE`` (else the system trust store);
2. the pod's service account (in-cluster config), when ``KUBERNETES_SERVICE_HOST`` is set;
3. a kubeconfig (``KUBECONFIG`` or ``~/.kube/config``; ``AUDIOMCQ_KUBE_CONTEXT`` picks a context).

The token's value is never logged or put into an error. Objects are plain dicts (as ``kubectl`` sees them), so the
callers render manifests the way they are validated against the CRDs. ``Kube.apply`` has ``kubectl apply`` /
``replace`` semantics for whole objects: create, and on 409 read the live object and replace it with its
``resourceVersion`` (retried on a conflicting concurrent write).

Usage::

    kube = Kube()  # credentials as above
    obj = kube.apply(INFERENCE_SERVICE, manifest)
    kube.wait_for(INFERENCE_SERVICE, "audiomcq", "ns", lambda o: is_ready(o), timeout=600)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
HOST_ENV = "AUDIOMCQ_KUBE_HOST"
TOKEN_FILE_ENV = "AUDIOMCQ_KUBE_TOKEN_FILE"
CA_FILE_ENV = "AUDIOMCQ_KUBE_CA_FILE"
CONTEXT_ENV = "AUDIOMCQ_KUBE_CONTEXT"
NAMESPACE_ENV = "AUDIOMCQ_KUBE_NAMESPACE"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Resource:
    """A custom resource's API coordinates."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


INFERENCE_SERVICE = Resource("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")
TRAIN_JOB = Resource("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")
CLUSTER_TRAINING_RUNTIME = Resource(
    "trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes", "ClusterTrainingRuntime", namespaced=False
)


class KubeError(AudioMCQError):
    """A refused or failed API call; ``status`` is the HTTP status (None: no answer), ``reason`` the API's."""

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def configuration() -> k8s.Configuration:
    """A client configuration from the first credential source that is present (see the module docstring)."""
    from kubernetes import config as k8s_config

    cfg = k8s.Configuration()
    host = os.environ.get(HOST_ENV)
    if host:
        token_file = os.environ.get(TOKEN_FILE_ENV)
        if not token_file:
            raise AudioMCQError(f"{HOST_ENV} is set but {TOKEN_FILE_ENV} (the bearer token's file) is not")
        cfg.host = host.rstrip("/")
        cfg.api_key_prefix["authorization"] = "Bearer"
        cfg.refresh_api_key_hook = _token_reader(Path(token_file))
        cfg.refresh_api_key_hook(cfg)  # the client sends the header only when a key is already set
        ca = os.environ.get(CA_FILE_ENV)
        if ca:
            cfg.ssl_ca_cert = ca
        log.info("kubernetes API %s (token from %s)", cfg.host, TOKEN_FILE_ENV)
        return cfg
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=cfg)
        log.info("kubernetes API %s (in-cluster service account)", cfg.host)
        return cfg
    kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
    if not Path(kubeconfig).is_file():
        raise AudioMCQError(
            f"no Kubernetes credentials: set {HOST_ENV} and {TOKEN_FILE_ENV}, run in a pod with a service account, "
            f"or provide a kubeconfig ({kubeconfig} does not exist)"
        )
    k8s_config.load_kube_config(kubeconfig, context=os.environ.get(CONTEXT_ENV), client_configuration=cfg)
    log.info("kubernetes API %s (kubeconfig %s)", cfg.host, kubeconfig)
    return cfg


def _token_reader(path: Path) -> Callable[[k8s.Configuration], None]:
    """A hook that puts the file's current token into the configuration before each request."""

    def refresh(cfg: k8s.Configuration) -> None:
        try:
            token = path.read_text().strip()
        except OSError as err:
            raise AudioMCQError(f"{path}: cannot read the Kubernetes token ({err.strerror})") from None
        if not token:
            raise AudioMCQError(f"{path}: the Kubernetes token file is empty")
        cfg.api_key["authorization"] = token

    return refresh


def api_client(cfg: k8s.Configuration | None = None) -> k8s.ApiClient:
    """An ``ApiClient`` (for ``CoreV1Api``, the Kubeflow SDK's ``client_configuration``, …)."""
    return k8s.ApiClient(cfg or configuration())


def default_namespace() -> str:
    """``AUDIOMCQ_KUBE_NAMESPACE``, else the pod's own namespace, else ``default``."""
    if os.environ.get(NAMESPACE_ENV):
        return os.environ[NAMESPACE_ENV]
    if SA_NAMESPACE_FILE.is_file():
        return SA_NAMESPACE_FILE.read_text().strip()
    return "default"


def serialize(obj: Any) -> Any:
    """An SDK model (kubernetes, kserve, kubeflow) as the plain JSON-able object the API server receives."""
    return k8s.ApiClient().sanitize_for_serialization(obj)


def _error(err: Exception, what: str) -> KubeError:
    """A KubeError naming the object and carrying the API's own message (a Status body)."""
    import json

    if isinstance(err, k8s.ApiException):
        message, reason = err.reason or "", ""
        try:
            body = json.loads(err.body or "{}")
            message, reason = body.get("message", message), body.get("reason", "")
        except (json.JSONDecodeError, AttributeError):
            pass
        if err.status == 401:
            message = "unauthorized: the API server refused the credentials (token expired or wrong?)"
        return KubeError(f"{what}: HTTP {err.status} {reason}: {message}".replace(" : ", ": "), err.status, reason)
    return KubeError(f"{what}: the Kubernetes API did not answer ({type(err).__name__}: {err})")


class Kube:
    """Custom objects (any group) through one ``CustomObjectsApi``."""

    def __init__(self, client: k8s.ApiClient | None = None) -> None:
        self.client = client or api_client()
        self.api = k8s.CustomObjectsApi(self.client)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except (k8s.ApiException, HTTPError, OSError) as err:
            raise _error(err, what) from None

    def _args(self, res: Resource, namespace: str | None) -> tuple[Any, ...]:
        if res.namespaced:
            if not namespace:
                raise AudioMCQError(f"{res.kind} is namespaced: a namespace is needed")
            return (res.group, res.version, namespace, res.plural)
        return (res.group, res.version, res.plural)

    def _fn(self, res: Resource, verb: str) -> Callable[..., Any]:
        scope = "namespaced" if res.namespaced else "cluster"
        return getattr(self.api, f"{verb}_{scope}_custom_object")

    def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        try:
            return self._call(f"get {res.kind} {name}", self._fn(res, "get"), *self._args(res, namespace), name)
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def list(self, res: Resource, namespace: str | None = None, label_selector: str = "") -> list[dict[str, Any]]:
        """Every object of the kind (in ``namespace``), optionally filtered by labels."""
        fn = self._fn(res, "list")
        found = self._call(f"list {res.plural}", fn, *self._args(res, namespace), label_selector=label_selector)
        return list(found.get("items", []))

    def create(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        name, namespace = _name(obj), obj.get("metadata", {}).get("namespace")
        return self._call(f"create {res.kind} {name}", self._fn(res, "create"), *self._args(res, namespace), obj)

    def replace(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace the whole object; ``metadata.resourceVersion`` must be the live one."""
        name, namespace = _name(obj), obj.get("metadata", {}).get("namespace")
        fn = self._fn(res, "replace")
        return self._call(f"replace {res.kind} {name}", fn, *self._args(res, namespace), name, obj)

    def apply(self, res: Resource, obj: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
        """Create ``obj``, or replace the live one of the same name (its status is kept by the API server)."""
        name, namespace = _name(obj), obj.get("metadata", {}).get("namespace")
        try:
            created = self.create(res, obj)
            log.info("created %s %s", res.kind, name)
            return created
        except KubeError as err:
            if err.status != 409:
                raise
        for attempt in range(attempts):
            live = self.get(res, name, namespace)
            if live is None:  # deleted in between: create again
                return self.create(res, obj)
            body = {
                **obj,
                "metadata": {**obj.get("metadata", {}), "resourceVersion": live["metadata"]["resourceVersion"]},
            }
            try:
                replaced = self.replace(res, body)
                log.info("replaced %s %s", res.kind, name)
                return replaced
            except KubeError as err:
                if err.status != 409 or attempt == attempts - 1:
                    raise
                log.info("%s %s changed while replacing it; retrying", res.kind, name)
        raise AssertionError("unreachable")

    def patch(self, res: Resource, name: str, patch: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386): ``None`` removes a key; lists are replaced whole."""
        fn = self._fn(res, "patch")
        return self._call(f"patch {res.kind} {name}", fn, *self._args(res, namespace), name, patch)

    def delete(self, res: Resource, name: str, namespace: str | None = None) -> bool:
        """Delete the object; False when it did not exist."""
        try:
            self._call(f"delete {res.kind} {name}", self._fn(res, "delete"), *self._args(res, namespace), name)
        except KubeError as err:
            if err.status == 404:
                return False
            raise
        log.info("deleted %s %s", res.kind, name)
        return True

    def wait_for(
        self,
        res: Resource,
        name: str,
        predicate: Callable[[dict[str, Any] | None], bool],
        namespace: str | None = None,
        timeout: float = 600.0,
        poll: float = 2.0,
    ) -> dict[str, Any] | None:
        """Poll the object until ``predicate`` holds (see ``wait_for``)."""
        return wait_for(lambda: self.get(res, name, namespace), predicate, timeout, poll, what=f"{res.kind} {name}")


def _name(obj: dict[str, Any]) -> str:
    name = obj.get("metadata", {}).get("name")
    if not name:
        raise AudioMCQError(f"{obj.get('kind', 'object')} has no metadata.name")
    return str(name)


def status_summary(obj: dict[str, Any] | None) -> str:
    """A one-line view of an object's status: its conditions (type=status, reason) and phase."""
    if obj is None:
        return "absent"
    status = obj.get("status") or {}
    parts = [f"phase={status['phase']}"] if "phase" in status else []
    for cond in status.get("conditions") or []:
        text = f"{cond.get('type')}={cond.get('status')}"
        if cond.get("reason"):
            text += f" ({cond['reason']}{': ' + cond['message'] if cond.get('message') else ''})"
        parts.append(text)
    return ", ".join(parts) or "no status yet"


def wait_for(
    fetch: Callable[[], dict[str, Any] | None],
    predicate: Callable[[dict[str, Any] | None], bool],
    timeout: float = 600.0,
    poll: float = 2.0,
    what: str = "object",
    describe: Callable[[dict[str, Any] | None], str] = status_summary,
) -> dict[str, Any] | None:
    """Fetch until ``predicate(obj)`` is true, logging each change of ``describe(obj)``; returns the object.

    ``predicate`` may raise to stop early (a failed job need not wait for the timeout). On timeout a KubeError
    names the last status seen."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        obj = fetch()
        seen = describe(obj)
        if seen != last:
            log.info("%s: %s", what, seen)
            last = seen
        if predicate(obj):
            return obj
        left = deadline - time.monotonic()
        if left <= 0:
            raise KubeError(f"{what}: condition not met after {timeout:.0f} s; last status: {seen}")
        time.sleep(min(poll, left))
