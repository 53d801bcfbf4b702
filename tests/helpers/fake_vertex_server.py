"""A local stand-in for the Vertex AI REST API that refuses what Google would refuse.

It speaks the v1 REST surface `google.cloud.aiplatform` uses with
`api_transport="rest"`: create and get pipeline jobs; create, get and list
schedules; through `fake_vertex_endpoints`, upload models, create, list,
get and update endpoints, deploy and undeploy models, and read the
long-running operations those answer with; through `fake_vertex_metadata`,
list pipeline jobs and read Vertex ML Metadata's artifacts, executions and
lineage; through `fake_vertex_experiments`, write Vertex AI Experiments'
contexts and artifacts and a registered TensorBoard's experiments, runs and
time series. Every body and query string is parsed strictly into its
`aiplatform_v1` request type and checked as the real API checks it
(`vertex_api_rules`): a bad request is answered 400, an unknown resource 404, a
pipeline job id taken 409, each with a google.rpc.Status body, so the client
raises the same `google.api_core` exception it would raise against Google. It
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
from typing import Any, Callable, Dict, List, Tuple

from google.cloud import aiplatform_v1

from tests.helpers.fake_vertex_endpoints import FakeEndpointsAndModels
from tests.helpers.fake_vertex_experiments import FakeExperiments
from tests.helpers.fake_vertex_metadata import FakeMetadata
from tests.helpers.vertex_api_rules import (
    ApiError,
    check_pipeline_job,
    check_pipeline_job_id,
    check_schedule,
    parse_body,
    parse_query,
    proto_dict,
)

_LOCATION = r"projects/[^/]+/locations/[^/]+"
_CREATE_TIME = "2024-01-01T00:00:00Z"
Reply = Tuple[int, Dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Dict[str, str]
    body: Any  # the JSON sent, its raw text when it is not JSON, None without a body


class FakeVertexServer:
    """Runs on a free port of 127.0.0.1 for the life of the context.

    `pipeline_jobs` and `schedules` hold what was created, as the API returned it;
    `prediction` holds the models, endpoints and operations; `metadata` the ML Metadata;
    `experiments` the experiments' contexts and the TensorBoard resources.
    """

    def __init__(self) -> None:
        self.requests: List[RecordedRequest] = []
        self.pipeline_jobs: Dict[str, Dict[str, Any]] = {}
        self.schedules: List[Dict[str, Any]] = []
        self.prediction = FakeEndpointsAndModels()
        self.metadata = FakeMetadata(self.pipeline_jobs)
        self.experiments = FakeExperiments(self.metadata)
        self._lock = threading.Lock()
        self._routes: List[Tuple[str, str, Callable[..., Reply]]] = [
            ("POST", rf"/v1/({_LOCATION})/pipelineJobs", self._create_pipeline_job),
            ("GET", rf"/v1/({_LOCATION}/pipelineJobs/[^/]+)", self._get_pipeline_job),
            ("POST", rf"/v1/({_LOCATION})/schedules", self._create_schedule),
            ("GET", rf"/v1/({_LOCATION})/schedules", self._list_schedules),
            ("GET", rf"/v1/({_LOCATION}/schedules/[^/]+)", self._get_schedule),
            ("GET", r"/storage/v1/b/([^/]+)", self._get_bucket),
            *self.prediction.routes(),
            *self.metadata.routes(),
            *self.experiments.routes(),
        ]
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

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

    def handle(self, method: str, url: str, raw: bytes) -> Reply:
        """The status and JSON body answering one request."""
        parsed = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        with self._lock:
            self.requests.append(RecordedRequest(method, parsed.path, query, _recorded(raw)))
            try:
                return self._route(method, parsed.path, query, raw)
            except ApiError as e:
                return e.code, e.body()

    def _route(self, method: str, path: str, query: Dict[str, str], raw: bytes) -> Reply:
        for route_method, pattern, answer in self._routes:
            match = re.fullmatch(pattern, path)
            if match and method == route_method:
                return answer(match.group(1), query, raw)
        raise ApiError(404, f"{method} {path} is not a method of this API (or of this fake)")

    def _create_pipeline_job(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(
            query, aiplatform_v1.CreatePipelineJobRequest, {"parent", "pipelineJob"}
        )
        job = parse_body(raw, aiplatform_v1.PipelineJob)
        job_id = request.pipeline_job_id or f"job-{len(self.pipeline_jobs) + 1}"
        check_pipeline_job_id(job_id)
        check_pipeline_job(job)
        name = f"{parent}/pipelineJobs/{job_id}"
        if name in self.pipeline_jobs:
            raise ApiError(409, f"PipelineJob {name} already exists.")
        job.name = name
        job.state = aiplatform_v1.PipelineState.PIPELINE_STATE_PENDING
        created = {**proto_dict(job), "createTime": _CREATE_TIME}
        self.pipeline_jobs[name] = created
        return 200, created

    def _get_pipeline_job(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetPipelineJobRequest, {"name"})
        if name not in self.pipeline_jobs:
            raise ApiError(404, f"PipelineJob {name} not found.")
        return 200, self.pipeline_jobs[name]

    def _create_schedule(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.CreateScheduleRequest, {"parent", "schedule"})
        schedule = parse_body(raw, aiplatform_v1.Schedule)
        check_schedule(schedule, parent)
        schedule.name = f"{parent}/schedules/{len(self.schedules) + 1}"
        schedule.state = aiplatform_v1.Schedule.State.ACTIVE
        created = {**proto_dict(schedule), "createTime": _CREATE_TIME}
        self.schedules.append(created)
        return 200, created

    def _list_schedules(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.ListSchedulesRequest, {"parent"})
        wanted = re.fullmatch(r'display_name="(.*)"', request.filter)
        if request.filter and not wanted:
            raise ApiError(
                400, f"Unsupported filter {request.filter!r}: this fake filters only by "
                'display_name="<name>".'
            )
        found = [
            s
            for s in self.schedules
            if s["name"].startswith(f"{parent}/")
            and (not wanted or s.get("displayName") == wanted.group(1))
        ]
        return 200, {"schedules": found} if found else {}

    def _get_schedule(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetScheduleRequest, {"name"})
        for schedule in self.schedules:
            if schedule["name"] == name:
                return 200, schedule
        raise ApiError(404, f"Schedule {name} not found.")

    def _get_bucket(self, bucket: str, query: Dict[str, str], raw: bytes) -> Reply:
        return 200, {"kind": "storage#bucket", "name": bucket, "id": bucket}


def _recorded(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _handler_for(fake: FakeVertexServer) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload = fake.handle(self.command, self.path, raw)
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
