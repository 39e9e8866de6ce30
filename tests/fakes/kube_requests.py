"""The fake Kubernetes API server's request semantics (kube_api.py): the parsed path, errors answered as ``Status``
objects, label selectors, and merge and JSON patches; apart from the server so that each module stays small."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any


class ApiError(Exception):
    """An error answered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


class Route:
    """A parsed request path."""

    def __init__(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            self.group, self.version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            self.group, self.version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        self.namespace = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            self.namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        self.plural = rest[0]
        self.name = rest[1] if len(rest) > 1 else None
        self.sub = rest[2] if len(rest) > 2 else None
        self.custom = bool(self.group)

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def not_found(self, name: str) -> ApiError:
        details = {"name": name, "group": self.group, "kind": self.plural}
        return ApiError(404, "NotFound", f'{self.resource} "{name}" not found', details)


def _selector(text: str) -> Callable[[dict[str, str]], bool]:
    """A label-selector predicate (equality- and set-based requirements, comma-separated, ANDed)."""
    reqs = [r.strip() for r in re.split(r",(?![^(]*\))", text) if r.strip()]
    tests: list[Callable[[dict[str, str]], bool]] = []
    for req in reqs:
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", req):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                tests.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                tests.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)", req):
            key, op, value = m.groups()
            if op == "!=":
                tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := re.fullmatch(r"(!?)([\w./-]+)", req):
            neg, key = m.groups()
            tests.append(lambda labels, k=key, n=bool(neg): (k in labels) != n)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {req!r}")
    return lambda labels: all(t(labels) for t in tests)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path and not path.startswith("/"):
        raise ApiError(422, "Invalid", f"json patch: bad path {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test, copy, move)."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")

    def walk(path: str) -> tuple[Any, str]:
        *parents, last = _pointer(path) or [""]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, last

    for op in ops:
        try:
            kind, path = op["op"], op["path"]
            if kind in ("copy", "move"):
                src, key = walk(op["from"])
                value = src[int(key)] if isinstance(src, list) else src[key]
                if kind == "move":
                    del src[int(key) if isinstance(src, list) else key]
                kind, op = "add", {"value": copy.deepcopy(value)}
            parent, key = walk(path)
            if kind == "test":
                if (parent[int(key)] if isinstance(parent, list) else parent[key]) != op["value"]:
                    raise ApiError(422, "Invalid", f"json patch: test failed at {path}")
            elif kind == "remove":
                del parent[int(key) if isinstance(parent, list) else key]
            elif kind in ("add", "replace"):
                if isinstance(parent, list):
                    index = len(parent) if key == "-" else int(key)
                    if kind == "add":
                        parent.insert(index, op["value"])
                    else:
                        parent[index] = op["value"]
                else:
                    if kind == "replace" and key not in parent:
                        raise KeyError(key)
                    parent[key] = op["value"]
            else:
                raise ApiError(422, "Invalid", f"json patch: unknown op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as err:
            raise ApiError(422, "Invalid", f"json patch: cannot apply {op}: {err!r}") from None
    return doc


def _patch(live: dict[str, Any], body: Any, ctype: str) -> Any:
    if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        return _merge(live, body)
    if ctype == "application/json-patch+json":
        return _json_patch(live, body)
    raise ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted "
        "media types include: application/json-patch+json, "
        "application/merge-patch+json, application/strategic-merge-patch+json",
    )
