"""A FAKE Kubernetes API server for custom resources (tests only).

Speaks just enough of the real API for the official ``kubernetes`` client: create, get, list,
JSON merge-patch and replace (PUT) of namespaced objects under ``/apis`` (``marquee.dev/v1alpha1``
``modelrollouts``, ``serving.kserve.io/v1beta1`` ``inferenceservices``,
``coordination.k8s.io/v1`` ``leases``, ...), with the status subresource semantics (a patch of
the main resource ignores ``status``; a patch of ``/status`` changes only ``status``) and
optimistic concurrency on replace (a ``resourceVersion`` sent that is not the stored one: 409). It is a stand-in for kube-apiserver, not a copy of it: no KServe or rollout
controller acts on what is stored; tests play them by patching ``status``.
Objects are kept in ``objects[(plural, namespace, name)]``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_PATH = re.compile(r"^/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/([^/?]+)"
                   r"(?:/([^/?]+))?(/status)?/?(?:\?.*)?$")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeKubeAPI:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []  # method, path, content type
        self._version = 0
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"null")

            def _handle(self, method: str) -> None:
                api.requests.append((method, self.path, self.headers.get("Content-Type", "")))
                m = _PATH.match(self.path)
                if not m:
                    return self._send(404, {"kind": "Status", "code": 404})
                group, version, ns, plural, name, status = m.groups()
                code, body = api.handle(method, ns, name, bool(status),
                                        self._body() if method in ("POST", "PATCH", "PUT") else None,
                                        self.headers.get("Content-Type", ""),
                                        plural=plural, api_version=f"{group}/{version}")
                self._send(code, body)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

            def do_PUT(self) -> None:  # noqa: N802
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _not_found(self, plural: str, name: str | None) -> tuple[int, dict[str, Any]]:
        return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                     "message": f'{plural} "{name}" not found'}

    def handle(self, method: str, ns: str, name: str | None, status: bool, body: Any,
               content_type: str, plural: str = "modelrollouts",
               api_version: str = "marquee.dev/v1alpha1") -> tuple[int, Any]:
        with self._lock:
            if method == "GET" and name is None:
                items = [o for (p, n, _), o in self.objects.items() if p == plural and n == ns]
                return 200, {"apiVersion": api_version, "kind": "List", "items": items}
            if method == "POST" and name is None:
                key = (plural, ns, body["metadata"]["name"])
                if key in self.objects:
                    return 409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"}
                body.pop("status", None)
                self._version += 1
                body["metadata"]["resourceVersion"] = str(self._version)
                self.objects[key] = body
                return 201, body
            obj = self.objects.get((plural, ns, name or ""))
            if obj is None:
                return self._not_found(plural, name)
            if method == "GET":
                return 200, obj
            if method == "PUT" and not status:
                sent = (body.get("metadata") or {}).get("resourceVersion")
                if sent is not None and sent != obj["metadata"].get("resourceVersion"):
                    return 409, {"kind": "Status", "status": "Failure", "reason": "Conflict",
                                 "code": 409, "message": f'{plural} "{name}": the object has '
                                 "been modified; please apply your changes to the latest "
                                 "version and try again"}
                self._version += 1
                body["metadata"]["resourceVersion"] = str(self._version)
                if "status" in obj:
                    body["status"] = obj["status"]
                self.objects[(plural, ns, name or "")] = body
                return 200, body
            if method == "PATCH":
                if content_type != "application/merge-patch+json":
                    return 415, {"kind": "Status", "code": 415}
                if status:
                    obj = {**obj, "status": merge_patch(obj.get("status"), body.get("status"))}
                else:
                    body = {k: v for k, v in body.items() if k != "status"}
                    obj = {**merge_patch(obj, body), "status": obj.get("status")}
                    if obj["status"] is None:
                        obj.pop("status")
                self._version += 1
                obj["metadata"]["resourceVersion"] = str(self._version)
                self.objects[(plural, ns, name or "")] = obj
                return 200, obj
        return 405, {"kind": "Status", "code": 405}

    def start(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig at ``path`` whose current context is the fake API at ``url``, namespace
    ``marquee`` (a token that is no secret: the fake checks none)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: fake, user: {token: not-a-secret}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: marquee}}]\n")
    return path
