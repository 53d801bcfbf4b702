"""A local stand-in for the Vertex AI REST API, enough for PipelineJob and Schedule creation.

It speaks the v1 REST surface `google.cloud.aiplatform` uses with
`api_transport="rest"`: create a pipeline job, create and list schedules. It
also answers the Cloud Storage bucket lookup `PipelineJob.submit` makes
(reached through STORAGE_EMULATOR_HOST) so that check is exercised, not
skipped. Every request is recorded for the tests to inspect.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import threading
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

_LOCATION = r"projects/[^/]+/locations/[^/]+"


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Dict[str, str]
    body: Optional[Dict[str, Any]]


class FakeVertexServer:
    """Runs on a free port of 127.0.0.1 for the life of the context."""

    def __init__(self) -> None:
        self.requests: List[RecordedRequest] = []
        self.schedules: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeVertexServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def vertex_requests(self) -> List[RecordedRequest]:
        """Requests to the Vertex API (not the storage lookups)."""
        return [r for r in self.requests if r.path.startswith("/v1/")]

    def handle(self, method: str, url: str, body: Optional[dict]) -> Tuple[int, dict]:
        parsed = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        with self._lock:
            self.requests.append(RecordedRequest(method, parsed.path, query, body))
            return self._route(method, parsed.path, query, body or {})

    def _route(self, method: str, path: str, query: Dict[str, str], body: dict) -> Tuple[int, dict]:
        if match := re.fullmatch(rf"/v1/({_LOCATION})/pipelineJobs", path):
            if method == "POST":
                job_id = query.get("pipelineJobId") or f"job-{len(self.requests)}"
                return 200, {
                    **body,
                    "name": f"{match.group(1)}/pipelineJobs/{job_id}",
                    "state": "PIPELINE_STATE_PENDING",
                    "createTime": "2024-01-01T00:00:00Z",
                }
        if match := re.fullmatch(rf"/v1/({_LOCATION})/schedules", path):
            if method == "POST":
                schedule = {
                    **body,
                    "name": f"{match.group(1)}/schedules/{len(self.schedules) + 1}",
                    "state": "ACTIVE",
                    "createTime": "2024-01-01T00:00:00Z",
                }
                self.schedules.append(schedule)
                return 200, schedule
            if method == "GET":
                wanted = re.fullmatch(r'display_name="(.*)"', query.get("filter", ""))
                return 200, {
                    "schedules": [
                        s
                        for s in self.schedules
                        if not wanted or s.get("displayName") == wanted.group(1)
                    ]
                }
        if match := re.fullmatch(r"/storage/v1/b/([^/]+)", path):
            if method == "GET":
                return 200, {"kind": "storage#bucket", "name": match.group(1), "id": match.group(1)}
        message = f"{method} {path} is not part of this fake"
        return 404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}


def _handler_for(fake: FakeVertexServer) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload = fake.handle(self.command, self.path, json.loads(raw) if raw else None)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            return None

    return Handler
