"""The Vertex AI Experiments half of the fake control plane: metadata contexts and TensorBoard.

It serves what `custom_components.vertex_experiments` sends through `aiplatform_v1`'s
REST clients: in the `default` metadata store, create, get and update
(PATCH, with `updateMask`) contexts, `addContextChildren`,
`addContextArtifactsAndExecutions` and create artifacts (kept in
`FakeMetadata`'s table, so the lineage routes read them too); for a TensorBoard
instance the tests register, get it, create and get its experiments and runs,
create and list (paged) a run's time series, and the run-level and
experiment-level `:write` calls. Requests are parsed strictly into their
request types (`vertex_api_rules`) and refused as the API refuses them: 400 for
a bad id, a missing required field, an unknown time series value type, over 5000
points in one write or a point of the wrong type; 404 for a missing parent or
resource; 409 for an id or a display name taken. As the API documents, adding a
child or an artifact twice is skipped, a child may not become its own ancestor
or have more than 10 parents, and rewriting a step overwrites its value.
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Dict, List, Set, Tuple

from google.cloud import aiplatform_v1
from google.protobuf import json_format

from tests.helpers.fake_vertex_metadata import FakeMetadata
from tests.helpers.vertex_api_rules import (
    MAX_POINTS_PER_WRITE,
    METADATA_ID,
    TENSORBOARD_ID,
    TIME_SERIES_ID,
    ApiError,
    check_display_name,
    check_labels,
    check_metadata_size,
    check_resource_id,
    invalid,
    parse_body,
    parse_query,
    parse_request_body,
    proto_dict,
    raw_message,
)

_LOCATION = r"projects/[^/]+/locations/[^/]+"
_STORE = rf"{_LOCATION}/metadataStores/[^/:]+"
_CONTEXT = rf"{_STORE}/contexts/[^/:]+"
_TENSORBOARD = rf"{_LOCATION}/tensorboards/[^/:]+"
_TB_EXPERIMENT = rf"{_TENSORBOARD}/experiments/[^/:]+"
_TB_RUN = rf"{_TB_EXPERIMENT}/runs/[^/:]+"
_MAX_PARENTS = 10
_UPDATABLE_CONTEXT_FIELDS = ("display_name", "description", "metadata")
_MAX_PAGE_SIZE = 1000
_DEFAULT_PAGE_SIZE = 50
_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
_POINT_KIND = {"SCALAR": "scalar", "TENSOR": "tensor", "BLOB_SEQUENCE": "blobs"}
Reply = Tuple[int, Dict[str, Any]]
Route = Tuple[str, str, Callable[[str, Dict[str, str], bytes], Reply]]


class FakeExperiments:
    """Contexts of the `default` stores, and the TensorBoard instances `add_tensorboard` made.

    Resources are kept as the API answers them (REST JSON); `points` holds each time
    series' points by step. `page_size` caps every page of a time series list.
    """

    def __init__(self, metadata: FakeMetadata) -> None:
        self.metadata = metadata
        self.contexts: Dict[str, Dict[str, Any]] = {}
        self.context_artifacts: Dict[str, List[str]] = {}
        self.tensorboards: Dict[str, Dict[str, Any]] = {}
        self.tensorboard_experiments: Dict[str, Dict[str, Any]] = {}
        self.tensorboard_runs: Dict[str, Dict[str, Any]] = {}
        self.time_series: Dict[str, Dict[str, Any]] = {}
        self.points: Dict[str, Dict[int, Dict[str, Any]]] = {}
        self.page_size = _DEFAULT_PAGE_SIZE
        self._clock = 0

    def add_tensorboard(self, name: str) -> None:
        """A TensorBoard instance, as `gcloud ai tensorboards create` would leave one."""
        self.tensorboards[name] = {"name": name, "displayName": name.rsplit("/", 1)[-1]}

    def scalars(self, tensorboard_run: str) -> Dict[str, List[Tuple[int, float]]]:
        """display name -> [(step, value)] of the run's scalar series, by step."""
        return {
            series["displayName"]: [
                (step, point["scalar"].get("value", 0.0))
                for step, point in sorted(self.points[name].items())
            ]
            for name, series in self.time_series.items()
            if name.startswith(f"{tensorboard_run}/timeSeries/")
        }

    def routes(self) -> List[Route]:
        return [
            ("POST", rf"/v1/({_STORE})/contexts", self._create_context),
            ("GET", rf"/v1/({_CONTEXT})", self._get_context),
            ("PATCH", rf"/v1/({_CONTEXT})", self._update_context),
            ("POST", rf"/v1/({_CONTEXT}):addContextChildren", self._add_children),
            (
                "POST",
                rf"/v1/({_CONTEXT}):addContextArtifactsAndExecutions",
                self._add_artifacts_and_executions,
            ),
            ("POST", rf"/v1/({_STORE})/artifacts", self._create_artifact),
            ("GET", rf"/v1/({_TENSORBOARD})", self._get_tensorboard),
            ("POST", rf"/v1/({_TENSORBOARD})/experiments", self._create_tb_experiment),
            ("GET", rf"/v1/({_TB_EXPERIMENT})", self._get_tb_experiment),
            ("POST", rf"/v1/({_TB_EXPERIMENT}):write", self._write_experiment_data),
            ("POST", rf"/v1/({_TB_EXPERIMENT})/runs", self._create_tb_run),
            ("GET", rf"/v1/({_TB_RUN})", self._get_tb_run),
            ("POST", rf"/v1/({_TB_RUN}):write", self._write_run_data),
            ("GET", rf"/v1/({_TB_RUN})/timeSeries", self._list_time_series),
            ("POST", rf"/v1/({_TB_RUN})/timeSeries", self._create_time_series),
        ]

    # --- metadata contexts and artifacts ------------------------------------------------------

    def _create_context(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.CreateContextRequest, {"parent", "context"})
        context = proto_dict(parse_body(raw, aiplatform_v1.Context))
        _check_store(parent)
        context_id = request.context_id or f"context-{len(self.contexts) + 1}"
        check_resource_id(context_id, METADATA_ID, "context_id")
        _check_context_fields(context)
        name = f"{parent}/contexts/{context_id}"
        if name in self.contexts:
            raise ApiError(409, f"Context {name} already exists.")
        now = self._now()
        context.update(name=name, createTime=now, updateTime=now, etag=now)
        context.pop("parentContexts", None)
        self.contexts[name] = context
        return 200, context

    def _get_context(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetContextRequest, {"name"})
        return 200, self._context(name)

    def _update_context(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.UpdateContextRequest, {"context"})
        update = proto_dict(parse_body(raw, aiplatform_v1.Context))
        if update.get("name", name) != name:
            raise invalid(f"Context.name {update['name']!r} does not match the URL's {name!r}.")
        paths = list(request.update_mask.paths) if "updateMask" in query else None
        for path in paths or ():
            if path not in _UPDATABLE_CONTEXT_FIELDS:
                raise invalid(
                    f"update_mask path {path!r} cannot be updated; updatable: "
                    f"{', '.join(_UPDATABLE_CONTEXT_FIELDS)}."
                )
        if name not in self.contexts:
            if not request.allow_missing:
                raise ApiError(404, f"Context {name} not found.")
            self.contexts[name] = {"name": name, "createTime": self._now()}
        _check_context_fields(update)
        context = self.contexts[name]
        for field in paths if paths is not None else _UPDATABLE_CONTEXT_FIELDS:
            key = _json_name(field)
            if key in update:
                context[key] = update[key]
            elif paths is not None:
                context.pop(key, None)
        context["updateTime"] = context["etag"] = self._now()
        return 200, context

    def _add_children(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.AddContextChildrenRequest, {"context"})
        request = parse_request_body(raw, aiplatform_v1.AddContextChildrenRequest, "context")
        self._context(parent)
        for child in request.child_contexts:
            parents = self._context(child).setdefault("parentContexts", [])
            if parent in parents:
                continue
            if child == parent or child in self._ancestors(parent):
                raise invalid(f"Adding {child} as a child of {parent} would create a cycle.")
            if len(parents) >= _MAX_PARENTS:
                raise invalid(f"Context {child} already has {_MAX_PARENTS} parents, the limit.")
            parents.append(parent)
        return 200, {}

    def _add_artifacts_and_executions(
        self, context: str, query: Dict[str, str], raw: bytes
    ) -> Reply:
        parse_query(query, aiplatform_v1.AddContextArtifactsAndExecutionsRequest, {"context"})
        request = parse_request_body(
            raw, aiplatform_v1.AddContextArtifactsAndExecutionsRequest, "context"
        )
        self._context(context)
        for execution in request.executions:
            if execution not in self.metadata.executions:
                raise ApiError(404, f"Execution {execution} not found.")
        attributed = self.context_artifacts.setdefault(context, [])
        for artifact in request.artifacts:
            if artifact not in self.metadata.artifacts:
                raise ApiError(404, f"Artifact {artifact} not found.")
            if artifact not in attributed:
                attributed.append(artifact)
        return 200, {}

    def _create_artifact(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.CreateArtifactRequest, {"parent", "artifact"})
        artifact = proto_dict(parse_body(raw, aiplatform_v1.Artifact))
        _check_store(parent)
        artifact_id = request.artifact_id or f"artifact-{len(self.metadata.artifacts) + 1}"
        check_resource_id(artifact_id, METADATA_ID, "artifact_id")
        check_display_name(artifact.get("displayName", ""), "Artifact.display_name")
        check_metadata_size(artifact.get("metadata", {}), "Artifact.metadata")
        name = f"{parent}/artifacts/{artifact_id}"
        if name in self.metadata.artifacts:
            raise ApiError(409, f"Artifact {name} already exists.")
        now = self._now()
        artifact.update(name=name, createTime=now, updateTime=now, etag=now)
        self.metadata.artifacts[name] = artifact
        return 200, artifact

    def _context(self, name: str) -> Dict[str, Any]:
        if name not in self.contexts:
            raise ApiError(404, f"Context {name} not found.")
        return self.contexts[name]

    def _ancestors(self, name: str) -> Set[str]:
        found: Set[str] = set()
        frontier = [name]
        while frontier:
            for parent in self.contexts[frontier.pop()].get("parentContexts", []):
                if parent not in found:
                    found.add(parent)
                    frontier.append(parent)
        return found

    # --- TensorBoard ----------------------------------------------------------------------------

    def _get_tensorboard(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetTensorboardRequest, {"name"})
        return 200, _found(self.tensorboards, name, "Tensorboard")

    def _create_tb_experiment(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(
            query,
            aiplatform_v1.CreateTensorboardExperimentRequest,
            {"parent", "tensorboardExperiment"},
        )
        experiment = proto_dict(parse_body(raw, aiplatform_v1.TensorboardExperiment))
        _found(self.tensorboards, parent, "Tensorboard")
        check_resource_id(
            request.tensorboard_experiment_id, TENSORBOARD_ID, "tensorboard_experiment_id"
        )
        check_display_name(experiment.get("displayName", ""), "TensorboardExperiment.display_name")
        check_labels(experiment.get("labels", {}))
        name = f"{parent}/experiments/{request.tensorboard_experiment_id}"
        return 200, self._add(self.tensorboard_experiments, name, experiment)

    def _get_tb_experiment(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetTensorboardExperimentRequest, {"name"})
        return 200, _found(self.tensorboard_experiments, name, "TensorboardExperiment")

    def _create_tb_run(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(
            query, aiplatform_v1.CreateTensorboardRunRequest, {"parent", "tensorboardRun"}
        )
        run = proto_dict(parse_body(raw, aiplatform_v1.TensorboardRun))
        _found(self.tensorboard_experiments, parent, "TensorboardExperiment")
        check_resource_id(request.tensorboard_run_id, TENSORBOARD_ID, "tensorboard_run_id")
        _require_display_name(run, "TensorboardRun")
        check_labels(run.get("labels", {}))
        _unique_display_name(self.tensorboard_runs, parent, "runs", run, "TensorboardRun")
        name = f"{parent}/runs/{request.tensorboard_run_id}"
        return 200, self._add(self.tensorboard_runs, name, run)

    def _get_tb_run(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetTensorboardRunRequest, {"name"})
        return 200, _found(self.tensorboard_runs, name, "TensorboardRun")

    def _create_time_series(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(
            query,
            aiplatform_v1.CreateTensorboardTimeSeriesRequest,
            {"parent", "tensorboardTimeSeries"},
        )
        series = proto_dict(parse_body(raw, aiplatform_v1.TensorboardTimeSeries))
        _found(self.tensorboard_runs, parent, "TensorboardRun")
        _require_display_name(series, "TensorboardTimeSeries")
        if series.get("valueType", "VALUE_TYPE_UNSPECIFIED") == "VALUE_TYPE_UNSPECIFIED":
            raise invalid("TensorboardTimeSeries.value_type is required.")
        _unique_display_name(
            self.time_series, parent, "timeSeries", series, "TensorboardTimeSeries"
        )
        series_id = request.tensorboard_time_series_id or str(len(self.time_series) + 1)
        check_resource_id(series_id, TIME_SERIES_ID, "tensorboard_time_series_id")
        name = f"{parent}/timeSeries/{series_id}"
        self.points[name] = {}
        return 200, self._add(self.time_series, name, series)

    def _list_time_series(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.ListTensorboardTimeSeriesRequest, {"parent"})
        _found(self.tensorboard_runs, parent, "TensorboardRun")
        for field in ("filter", "order_by"):
            if getattr(request, field):
                raise invalid(
                    f"ListTensorboardTimeSeriesRequest.{field} is not served by this fake."
                )
        if request.page_size < 0:
            raise invalid(f"page_size must not be negative, got {request.page_size}.")
        found = sorted(
            (s for n, s in self.time_series.items() if n.startswith(f"{parent}/timeSeries/")),
            key=lambda s: s["name"],
        )
        size = min(request.page_size or self.page_size, self.page_size, _MAX_PAGE_SIZE)
        start = _page_start(request.page_token, len(found))
        answer: Dict[str, Any] = {}
        if found[start : start + size]:
            answer["tensorboardTimeSeries"] = found[start : start + size]
        if start + size < len(found):
            answer["nextPageToken"] = str(start + size)
        return 200, answer

    def _write_run_data(self, run: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.WriteTensorboardRunDataRequest, {"tensorboardRun"})
        request = parse_request_body(
            raw, aiplatform_v1.WriteTensorboardRunDataRequest, "tensorboard_run"
        )
        self._write(run, raw_message(request).time_series_data)
        return 200, {}

    def _write_experiment_data(self, experiment: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(
            query, aiplatform_v1.WriteTensorboardExperimentDataRequest, {"tensorboardExperiment"}
        )
        request = parse_request_body(
            raw, aiplatform_v1.WriteTensorboardExperimentDataRequest, "tensorboard_experiment"
        )
        _found(self.tensorboard_experiments, experiment, "TensorboardExperiment")
        run_requests = raw_message(request).write_run_data_requests
        for run_request in run_requests:
            if not run_request.tensorboard_run.startswith(f"{experiment}/runs/"):
                raise invalid(
                    f"TensorboardRun {run_request.tensorboard_run!r} is not a run of "
                    f"{experiment}."
                )
            self._check_write(run_request.tensorboard_run, run_request.time_series_data)
        for run_request in run_requests:
            self._write(run_request.tensorboard_run, run_request.time_series_data)
        return 200, {}

    def _write(self, run: str, time_series_data: Any) -> None:
        """All or nothing: every series and point is checked before any is stored."""
        self._check_write(run, time_series_data)
        for data in time_series_data:
            stored = self.points[f"{run}/timeSeries/{data.tensorboard_time_series_id}"]
            for point in data.values:
                stored[point.step] = json_format.MessageToDict(point)

    def _check_write(self, run: str, time_series_data: Any) -> None:
        _found(self.tensorboard_runs, run, "TensorboardRun")
        if not time_series_data:
            raise invalid("time_series_data is required.")
        total = sum(len(data.values) for data in time_series_data)
        if total > MAX_POINTS_PER_WRITE:
            raise invalid(
                f"{total} data points in one request; the limit is {MAX_POINTS_PER_WRITE}."
            )
        for data in time_series_data:
            name = f"{run}/timeSeries/{data.tensorboard_time_series_id}"
            series = _found(self.time_series, name, "TensorboardTimeSeries")
            value_type = aiplatform_v1.TensorboardTimeSeries.ValueType(data.value_type).name
            if value_type != series["valueType"]:
                raise invalid(
                    f"TimeSeriesData of {name} has value_type {value_type}; the series holds "
                    f"{series['valueType']}."
                )
            for point in data.values:
                if point.WhichOneof("value") != _POINT_KIND[value_type]:
                    raise invalid(
                        f"A point at step {point.step} of {name} holds "
                        f"{point.WhichOneof('value')}; a {value_type} series holds "
                        f"{_POINT_KIND[value_type]}."
                    )

    def _add(self, table: Dict[str, Dict[str, Any]], name: str, resource: Dict[str, Any]) -> Dict:
        if name in table:
            raise ApiError(409, f"{name} already exists.")
        now = self._now()
        resource.update(name=name, createTime=now, updateTime=now, etag=now)
        table[name] = resource
        return resource

    def _now(self) -> str:
        """A clock that advances a second per use, so creation order is unambiguous."""
        self._clock += 1
        return (_EPOCH + datetime.timedelta(seconds=self._clock)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_store(parent: str) -> None:
    if not parent.endswith("/metadataStores/default"):
        raise ApiError(404, f"MetadataStore {parent} not found.")


def _check_context_fields(context: Dict[str, Any]) -> None:
    check_display_name(context.get("displayName", ""), "Context.display_name")
    check_metadata_size(context.get("metadata", {}), "Context.metadata")


def _found(table: Dict[str, Dict[str, Any]], name: str, kind: str) -> Dict[str, Any]:
    if name not in table:
        raise ApiError(404, f"{kind} {name} not found.")
    return table[name]


def _require_display_name(resource: Dict[str, Any], kind: str) -> None:
    if not resource.get("displayName"):
        raise invalid(f"{kind}.display_name is required.")
    check_display_name(resource["displayName"], f"{kind}.display_name")


def _unique_display_name(
    table: Dict[str, Dict[str, Any]], parent: str, collection: str, resource: Dict, kind: str
) -> None:
    for name, existing in table.items():
        if name.startswith(f"{parent}/{collection}/") and (
            existing.get("displayName") == resource["displayName"]
        ):
            raise ApiError(
                409, f"A {kind} named {resource['displayName']!r} already exists in {parent}."
            )


def _page_start(token: str, total: int) -> int:
    if not token:
        return 0
    if not token.isdigit() or int(token) > total:
        raise invalid(f"Invalid page_token {token!r}.")
    return int(token)


def _json_name(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)
