"""A small Kubernetes API server for tests: enough of the REST API for the official ``kubernetes`` client (30.1)
and the Kubeflow Trainer SDK (0.5), with a hook that lets a test play the controller.

Paths (any group/version/plural; nothing needs registering):

- ``/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/status]]`` and cluster-scoped
  ``/apis/{group}/{version}/{plural}[/{name}[/status]]`` (a list there spans every namespace);
- ``/api/v1/namespaces/{ns}/{plural}[/{name}[/status|/log]]`` (configmaps, pods, events, services, …) and
  ``/api/v1/{plural}[/{name}]``.

Verbs: GET (one, or a list filtered by ``labelSelector`` — ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``,
``k notin (a,b)``, ``k``, ``!k`` — and ``fieldSelector`` on ``metadata.name``/``metadata.namespace``); POST (409
AlreadyExists; sets uid, creationTimestamp, resourceVersion, generation; ``generateName``); PUT (409 Conflict on a
stale resourceVersion; custom objects need one, like the real server: 422 without); PATCH with
``application/merge-patch+json`` (what ``patch_*_custom_object`` sends), ``application/strategic-merge-patch+json``
(treated as a merge patch) and ``application/json-patch+json`` (add/remove/replace/test/copy/move); DELETE.
Writes to the main resource keep the stored status; ``/status`` writes change only the status. ``?dryRun=All``
stores nothing. Errors are ``Status`` objects (400/401/404/405/409/415/422) like the real API's. Every request
needs ``Authorization: Bearer <token>``. No watch and no pagination.

The controller hook: ``server.on("inferenceservices", fn)`` calls ``fn(event, obj)`` (``ADDED``/``MODIFIED``/
``DELETED``) after each write through the API, with the stored object, which ``fn`` may change in place (e.g. set
``obj["status"]``); the write's own response is the object as it was before the hook ran, like a controller that
acts after the API server answered. ``server.validators[plural]`` may hold a function returning a list of errors
(-> 422 Invalid), e.g. a CRD schema check. ``server.objects[(plural, namespace, name)]`` (namespace None when
cluster-scoped) gives direct access; ``server.add(plural, obj)`` seeds objects, ``server.logs[(ns, pod)]`` pod logs.

kube_requests.py parses the paths and applies the selectors and patches; kserve_play.py plays KServe's controller.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from fakes.kube_requests import ApiError, Route, _patch, _selector

Hook = Callable[[str, dict[str, Any]], None]
CORE_KINDS = {
    "configmaps": "ConfigMap",
    "pods": "Pod",
    "events": "Event",
    "services": "Service",
    "secrets": "Secret",
    "namespaces": "Namespace",
    "serviceaccounts": "ServiceAccount",
}
NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class KubeAPIServer:
    """The server; ``start()`` it on 127.0.0.1 (a free port), ``stop()`` it."""

    def __init__(self, token: str | None = None, port: int = 0) -> None:
        self.token = token or secrets.token_hex(16)
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.hooks: dict[str, list[Hook]] = {}
        self.validators: dict[str, Callable[[dict[str, Any]], list[str]]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.lock = threading.RLock()
        self._version = 0
        self._http = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> KubeAPIServer:
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (for ``load_kube_config`` users such as the Kubeflow SDK)."""
        import yaml

        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}],
        }
        Path(path).write_text(yaml.safe_dump(cfg))
        return Path(path)

    # --- direct access for tests ----------------------------------------------------------------------------------
    def on(self, plural: str, hook: Hook) -> None:
        """Call ``hook(event, obj)`` after every API write to ``plural`` (see the module docstring)."""
        self.hooks.setdefault(plural, []).append(hook)

    def get(self, plural: str, name: str, namespace: str | None = "default") -> dict[str, Any] | None:
        """A deep copy of a stored object, or None."""
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` as given (status included), with server-set metadata; no hooks run."""
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if meta.get("namespace") is None:
                meta.pop("namespace", None)
            self._stamp(meta)
            self.objects[(plural, meta.get("namespace"), meta["name"])] = obj
            return copy.deepcopy(obj)

    def set_status(self, plural: str, name: str, status: dict[str, Any], namespace: str | None = "default") -> None:
        """Replace a stored object's status (a controller's status write; no hooks run)."""
        with self.lock:
            obj = self.objects[(plural, namespace, name)]
            obj["status"] = copy.deepcopy(status)
            obj["metadata"]["resourceVersion"] = self._next_version()

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _stamp(self, meta: dict[str, Any]) -> None:
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = self._next_version()

    # --- the API ----------------------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: Any) -> tuple[int, Any]:
        """One request -> (HTTP status, JSON object or text)."""
        if headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        route = Route(path)
        with self.lock:
            if route.sub == "log":
                if method != "GET" or route.plural != "pods":
                    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
                self._one(route, route.name)
                return 200, self.logs.get((route.namespace, route.name), "")
            if route.sub not in (None, "status"):
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
            if method == "GET":
                return 200, self._one(route, route.name) if route.name else self._list(route, query)
            if method == "POST" and route.name is None:
                return 201, self._create(route, body, query)
            if method in ("PUT", "PATCH") and route.name:
                return 200, self._update(route, method, body, query, headers.get("Content-Type", ""))
            if method == "DELETE" and route.name:
                return 200, self._delete(route, query)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")

    def _key(self, route: Route, name: str) -> tuple[str, str | None, str]:
        return (route.plural, route.namespace, name)

    def _one(self, route: Route, name: str) -> dict[str, Any]:
        obj = self.objects.get(self._key(route, name))
        if obj is None:
            raise route.not_found(name)
        return copy.deepcopy(obj)

    def _list(self, route: Route, query: dict[str, str]) -> dict[str, Any]:
        match = _selector(query.get("labelSelector", ""))
        fields = dict(f.split("=", 1) for f in query.get("fieldSelector", "").split(",") if "=" in f)
        items = []
        for (plural, namespace, name), obj in sorted(self.objects.items(), key=lambda kv: str(kv[0])):
            if plural != route.plural or (route.namespace is not None and namespace != route.namespace):
                continue
            if fields.get("metadata.name", name) != name or fields.get("metadata.namespace", namespace) != namespace:
                continue
            if match(obj.get("metadata", {}).get("labels") or {}):
                items.append(copy.deepcopy(obj))
        kind = CORE_KINDS.get(route.plural) or (items[0].get("kind") if items else route.plural.capitalize())
        return {
            "apiVersion": route.api_version,
            "kind": f"{kind}List",
            "items": items,
            "metadata": {"resourceVersion": str(self._version)},
        }

    def _check(self, route: Route, obj: Any, name: str | None = None) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if name is None and not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if name is not None and meta.get("name") not in (None, name):
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})",
            )
        meta.setdefault("name", name)
        errors = [] if meta.get("name") else ["metadata.name: Required value: name or generateName is required"]
        if meta.get("name") and not NAME.fullmatch(meta["name"]):
            errors.append(
                f"metadata.name: Invalid value: {meta['name']!r}: a lowercase RFC 1123 subdomain must "
                "consist of lower case alphanumeric characters, '-' or '.'"
            )
        if route.namespace and meta.get("namespace") not in (None, route.namespace):
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        if route.namespace:
            meta["namespace"] = route.namespace
        if route.plural in self.validators and not errors:
            errors = list(self.validators[route.plural](obj))
        if errors:
            kind = obj.get("kind") or route.plural
            causes = [{"reason": "FieldValueInvalid", "message": e} for e in errors]
            raise ApiError(
                422,
                "Invalid",
                f'{kind}.{route.group or "core"} "{meta.get("name")}" is invalid: ' + "; ".join(errors),
                {"name": meta.get("name"), "kind": kind, "causes": causes},
            )
        return obj

    def _create(self, route: Route, body: Any, query: dict[str, str]) -> dict[str, Any]:
        obj = self._check(route, body)
        if route.sub == "status":
            raise ApiError(405, "MethodNotAllowed", "POST is not supported on a status subresource")
        key = self._key(route, obj["metadata"]["name"])
        if key in self.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{route.resource} "{key[2]}" already exists',
                {"name": key[2], "group": route.group, "kind": route.plural},
            )
        obj.pop("status", None)  # a status subresource: the create ignores it
        for field in ("uid", "creationTimestamp", "resourceVersion", "generation"):
            obj["metadata"].pop(field, None)
        if query.get("dryRun"):
            return obj
        self._stamp(obj["metadata"])
        self.objects[key] = obj
        return self._after(route, "ADDED", obj)

    def _update(self, route: Route, method: str, body: Any, query: dict[str, str], ctype: str) -> dict[str, Any]:
        live = self._one(route, route.name or "")
        if method == "PATCH":
            body = _patch(copy.deepcopy(live), body, ctype.split(";")[0].strip())
            wanted_version = (body.get("metadata") or {}).get("resourceVersion")
        else:
            wanted_version = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
            if route.custom and not wanted_version:
                message = "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                raise ApiError(422, "Invalid", f'{route.resource} "{route.name}" is invalid: {message}')
        obj = self._check(route, body, route.name)
        if wanted_version and wanted_version != live["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {route.resource} "{route.name}": the '
                "object has been modified; please apply your changes to the latest version and try again",
                {"name": route.name, "group": route.group, "kind": route.plural},
            )
        if route.sub == "status":  # only the status changes
            new = {**live, "status": obj.get("status")}
        else:
            new = {**obj, "metadata": {**obj["metadata"]}}
            new.pop("status", None)
            if "status" in live:
                new["status"] = live["status"]
            for field in ("uid", "creationTimestamp", "generation"):
                new["metadata"][field] = live["metadata"][field]
            if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
                k: v for k, v in live.items() if k not in ("metadata", "status")
            }:
                new["metadata"]["generation"] = live["metadata"]["generation"] + 1
        if query.get("dryRun"):
            return new
        new["metadata"]["resourceVersion"] = self._next_version()
        self.objects[self._key(route, route.name or "")] = new
        return self._after(route, "MODIFIED", new)

    def _delete(self, route: Route, query: dict[str, str]) -> dict[str, Any]:
        obj = self._one(route, route.name or "")
        if not query.get("dryRun"):
            del self.objects[self._key(route, route.name or "")]
            self._after(route, "DELETED", obj)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": route.name, "group": route.group, "kind": route.plural, "uid": obj["metadata"]["uid"]},
        }

    def _after(self, route: Route, event: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Run the hooks on the stored object; the answer is the object before they ran."""
        answer = copy.deepcopy(obj)
        for hook in self.hooks.get(route.plural, []):
            before = copy.deepcopy(obj)
            hook(event, obj)
            if obj != before and event != "DELETED":
                obj["metadata"]["resourceVersion"] = self._next_version()
        return answer


def _handler(server: KubeAPIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet test output
            pass

        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            server.requests.append((method, url.path))
            try:
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError as err:
                    raise ApiError(400, "BadRequest", f"the request body is not JSON: {err}") from None
                code, answer = server.handle(method, url.path, query, self.headers, body)
            except ApiError as err:
                code, answer = err.code, err.status()
            except Exception as err:  # noqa: BLE001 -- a bug in the stub or a hook: answer like an API server, keep serving
                code, answer = 500, ApiError(500, "InternalError", f"{type(err).__name__}: {err}").status()
            text = isinstance(answer, str)
            data = answer.encode() if text else json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler
