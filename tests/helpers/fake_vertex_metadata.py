"""The Vertex ML Metadata half of the fake control plane, and listing pipeline jobs.

It serves what `lineage ... --vertex` reads through `aiplatform_v1`'s REST
clients: get and list artifacts and executions (`filter`, paging),
`queryArtifactLineageSubgraph`, `queryExecutionInputsAndOutputs` and
`ListPipelineJobs` (whose answers carry each job's details, as Google's do).
What it serves is loaded as JSON and parsed strictly into the `aiplatform_v1`
types first, pipeline specs into KFP's `PipelineSpec`, so only resources the
real API could return are served. Requests are parsed strictly too
(`vertex_api_rules`); a filter is read with AIP-160's grammar as far as Vertex
documents it for these lists (comparisons of `name`, `display_name`, `uri`,
`state`, `schema_title`, `create_time`, `update_time` and
`metadata.<key>.<string_value|number_value|bool_value>`, joined with AND), and
anything else is refused with 400 rather than guessed at.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Callable, Dict, Iterable, List, Set, Tuple

from google.cloud import aiplatform_v1
from google.protobuf import json_format

from tests.helpers.vertex_api_rules import (
    ApiError,
    check_pipeline_job,
    invalid,
    parse_query,
    proto_dict,
)

_LOCATION = r"projects/[^/]+/locations/[^/]+"
_STORE = rf"{_LOCATION}/metadataStores/[^/:]+"
_MAX_PAGE_SIZE = 1000  # the API's limit for these lists
_DEFAULT_PAGE_SIZE = 100
_FILTER_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?[0-9]+(?:\.[0-9]+)?)'
    r"|(?P<op><=|>=|!=|=|<|>)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<dot>\.)|(?P<other>\S))"
)
_PLAIN_FIELDS = {"name", "display_name", "uri", "state", "schema_title"}
_TIME_FIELDS = {"create_time": "createTime", "update_time": "updateTime"}
_JSON_NAMES = {
    "name": "name",
    "display_name": "displayName",
    "uri": "uri",
    "state": "state",
    "schema_title": "schemaTitle",
}
_METADATA_KINDS = {"string_value": str, "number_value": float, "bool_value": bool}
Reply = Tuple[int, Dict[str, Any]]
Route = Tuple[str, str, Callable[[str, Dict[str, str], bytes], Reply]]
Condition = Callable[[Dict[str, Any]], bool]


class FakeMetadata:
    """Artifacts, executions and events of the `default` metadata store, as REST JSON.

    `pipeline_jobs` is the fake server's own table, so submitted jobs are listed too.
    `page_size` caps every page, so a client's paging is exercised.
    """

    def __init__(self, pipeline_jobs: Dict[str, Dict[str, Any]]) -> None:
        self.pipeline_jobs = pipeline_jobs
        self.artifacts: Dict[str, Dict[str, Any]] = {}
        self.executions: Dict[str, Dict[str, Any]] = {}
        self.events: List[Dict[str, Any]] = []
        self.page_size = _DEFAULT_PAGE_SIZE

    def load(
        self,
        artifacts: Iterable[Dict[str, Any]],
        executions: Iterable[Dict[str, Any]],
        events: Iterable[Dict[str, Any]],
        pipeline_jobs: Iterable[Dict[str, Any]],
    ) -> None:
        """Records a run as Vertex holds it; each resource must parse as its API type."""
        for artifact in artifacts:
            parsed = _strict(artifact, aiplatform_v1.Artifact)
            self.artifacts[parsed["name"]] = parsed
        for execution in executions:
            parsed = _strict(execution, aiplatform_v1.Execution)
            self.executions[parsed["name"]] = parsed
        for event in events:
            parsed = _strict(event, aiplatform_v1.Event)
            if parsed["artifact"] not in self.artifacts:
                raise ValueError(f"event names unknown artifact {parsed['artifact']}")
            if parsed["execution"] not in self.executions:
                raise ValueError(f"event names unknown execution {parsed['execution']}")
            self.events.append(parsed)
        for job in pipeline_jobs:
            check_pipeline_job(
                aiplatform_v1.PipelineJob.wrap(_strict_pb(job, aiplatform_v1.PipelineJob))
            )
            parsed = _strict(job, aiplatform_v1.PipelineJob)
            self.pipeline_jobs[parsed["name"]] = parsed

    def routes(self) -> List[Route]:
        return [
            ("GET", rf"/v1/({_STORE})/artifacts", self._list_artifacts),
            ("GET", rf"/v1/({_STORE}/artifacts/[^/:]+)", self._get_artifact),
            (
                "GET",
                rf"/v1/({_STORE}/artifacts/[^/:]+):queryArtifactLineageSubgraph",
                self._query_artifact_lineage,
            ),
            ("GET", rf"/v1/({_STORE})/executions", self._list_executions),
            ("GET", rf"/v1/({_STORE}/executions/[^/:]+)", self._get_execution),
            (
                "GET",
                rf"/v1/({_STORE}/executions/[^/:]+):queryExecutionInputsAndOutputs",
                self._query_execution,
            ),
            ("GET", rf"/v1/({_LOCATION})/pipelineJobs", self._list_pipeline_jobs),
        ]

    # --- artifacts and executions ---------------------------------------------------------------

    def _list_artifacts(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.ListArtifactsRequest, {"parent"})
        return self._list(parent, request, self.artifacts, "artifacts")

    def _list_executions(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.ListExecutionsRequest, {"parent"})
        return self._list(parent, request, self.executions, "executions")

    def _get_artifact(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetArtifactRequest, {"name"})
        return 200, self._artifact(name)

    def _get_execution(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetExecutionRequest, {"name"})
        return 200, self._execution(name)

    def _query_artifact_lineage(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        """Every node within `maxHops` events of the artifact, either way; no value: all."""
        request = parse_query(
            query, aiplatform_v1.QueryArtifactLineageSubgraphRequest, {"artifact"}
        )
        self._artifact(name)
        if request.filter:
            raise invalid("QueryArtifactLineageSubgraphRequest.filter is not served by this fake.")
        if request.max_hops < 0:
            raise invalid(f"max_hops must not be negative, got {request.max_hops}.")
        hops = request.max_hops if "maxHops" in query or "max_hops" in query else None
        nodes = {name}
        frontier = {name}
        while frontier and (hops is None or hops > 0):
            frontier = {
                other
                for event in self.events
                for end, other in (
                    (event["artifact"], event["execution"]),
                    (event["execution"], event["artifact"]),
                )
                if end in frontier and other not in nodes
            }
            nodes |= frontier
            hops = None if hops is None else hops - 1
        return 200, self._subgraph(nodes)

    def _query_execution(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.QueryExecutionInputsAndOutputsRequest, {"execution"})
        self._execution(name)
        linked = {e["artifact"] for e in self.events if e["execution"] == name}
        return 200, self._subgraph({name} | linked)

    def _subgraph(self, names: Set[str]) -> Dict[str, Any]:
        """A LineageSubgraph of the named nodes and the events between them."""
        subgraph = {
            "artifacts": [a for n, a in self.artifacts.items() if n in names],
            "executions": [e for n, e in self.executions.items() if n in names],
            "events": [
                e for e in self.events if e["artifact"] in names and e["execution"] in names
            ],
        }
        return {key: value for key, value in subgraph.items() if value}

    def _artifact(self, name: str) -> Dict[str, Any]:
        _check_store(name)
        if name not in self.artifacts:
            raise ApiError(404, f"Artifact {name} not found.")
        return self.artifacts[name]

    def _execution(self, name: str) -> Dict[str, Any]:
        _check_store(name)
        if name not in self.executions:
            raise ApiError(404, f"Execution {name} not found.")
        return self.executions[name]

    # --- pipeline jobs --------------------------------------------------------------------------

    def _list_pipeline_jobs(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.ListPipelineJobsRequest, {"parent"})
        if (
            request.filter
            or request.order_by
            or aiplatform_v1.ListPipelineJobsRequest.pb(request).HasField("read_mask")
        ):
            raise invalid("filter, order_by and read_mask are not served by this fake.")
        jobs = [j for name, j in self.pipeline_jobs.items() if name.startswith(f"{parent}/")]
        return 200, self._page(jobs, request.page_size, request.page_token, "pipelineJobs")

    # --- lists ----------------------------------------------------------------------------------

    def _list(
        self, parent: str, request: Any, records: Dict[str, Dict[str, Any]], field: str
    ) -> Reply:
        _check_store(parent)
        if request.order_by:
            raise invalid("order_by is not served by this fake.")
        condition = parse_filter(request.filter)
        found = [r for n, r in records.items() if n.startswith(f"{parent}/") and condition(r)]
        return 200, self._page(found, request.page_size, request.page_token, field)

    def _page(self, found: List[Any], size: int, token: str, field: str) -> Dict[str, Any]:
        if not 0 <= size <= _MAX_PAGE_SIZE:
            raise invalid(f"page_size must be in 1-{_MAX_PAGE_SIZE}, got {size}.")
        if token and not (token.isascii() and token.isdigit() and int(token) < len(found)):
            raise invalid(f"Invalid page_token {token!r}.")
        start = int(token or 0)
        end = start + min(size or _DEFAULT_PAGE_SIZE, self.page_size)
        page: Dict[str, Any] = {field: found[start:end]} if found[start:end] else {}
        if end < len(found):
            page["nextPageToken"] = str(end)
        return page


def parse_filter(text: str) -> Condition:
    """An AIP-160 filter of the documented fields, as a test of one REST JSON record."""
    tokens = _tokens(text)
    conditions = []
    position = 0
    while position < len(tokens):
        if conditions:
            if tokens[position] != ("word", "AND"):
                raise _unsupported(text, tokens[position][1])
            position += 1
        position, condition = _comparison(text, tokens, position)
        conditions.append(condition)
    return lambda record: all(c(record) for c in conditions)


def _tokens(text: str) -> List[Tuple[str, str]]:
    tokens = []
    position = 0
    while text[position:].strip():
        match = _FILTER_TOKEN.match(text, position)
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _comparison(text: str, tokens: List[Tuple[str, str]], position: int) -> Tuple[int, Condition]:
    """`field op value` from `position`; the position after it and its test."""
    path: List[str] = []
    while position < len(tokens) and tokens[position][0] in ("word", "string", "dot"):
        kind, value = tokens[position]
        if kind != "dot":
            path.append(_unquote(value) if kind == "string" else value)
        position += 1
    if position + 1 >= len(tokens) or tokens[position][0] != "op" or not path:
        raise invalid(f"Invalid filter {text!r}: expected <field> <operator> <value>.")
    op, (value_kind, value) = tokens[position][1], tokens[position + 1]
    if value_kind not in ("string", "number", "word") or value in ("AND", "OR", "NOT"):
        raise invalid(f"Invalid filter {text!r}: {value!r} is not a value.")
    literal: Any = _unquote(value) if value_kind == "string" else value
    if value_kind == "number":
        literal = float(value)
    return position + 2, _condition(text, path, op, literal)


def _condition(text: str, path: List[str], op: str, literal: Any) -> Condition:
    field = path[0]
    if len(path) == 1 and field in _PLAIN_FIELDS:
        if op not in ("=", "!="):
            raise invalid(f"Invalid filter {text!r}: {field} compares with = or != only.")
        return lambda record: (record.get(_JSON_NAMES[field], "") == str(literal)) == (op == "=")
    if len(path) == 1 and field in _TIME_FIELDS:
        moment = _time(text, literal)
        key = _TIME_FIELDS[field]
        return lambda record: _compare(_time(text, record[key]), op, moment)
    if len(path) == 3 and field == "metadata" and path[2] in _METADATA_KINDS:
        kind = _METADATA_KINDS[path[2]]
        if not isinstance(literal, kind) and not (kind is bool and literal in ("true", "false")):
            raise invalid(f"Invalid filter {text!r}: {path[2]} compares with a {kind.__name__}.")
        wanted = literal == "true" if kind is bool else literal
        return lambda record: _metadata_matches(record, path[1], kind, op, wanted)
    raise invalid(
        f"Unsupported field {'.'.join(path)!r} in filter {text!r}; supported: "
        f"{', '.join(sorted(_PLAIN_FIELDS | set(_TIME_FIELDS)))}, metadata.<key>.<kind>_value."
    )


def _metadata_matches(record: Dict[str, Any], key: str, kind: type, op: str, wanted: Any) -> bool:
    value = record.get("metadata", {}).get(key)
    if value is None or isinstance(value, bool) != (kind is bool):
        return False
    if not isinstance(value, (int, float) if kind is float else kind):
        return False
    return _compare(value, op, wanted)


def _compare(left: Any, op: str, right: Any) -> bool:
    return {
        "=": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]


def _time(text: str, value: Any) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as e:
        raise invalid(f"Invalid filter {text!r}: {value!r} is not an RFC 3339 time.") from e


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def _unsupported(text: str, token: str) -> ApiError:
    return invalid(
        f"Invalid filter {text!r} at {token!r}: this fake joins comparisons with AND only."
    )


def _check_store(name: str) -> None:
    """Vertex AI Pipelines record into the `default` metadata store; there is no other here."""
    store = "/".join(name.split("/")[:6])
    if not store.endswith("/metadataStores/default"):
        raise ApiError(404, f"MetadataStore {store} not found.")


def _strict_pb(resource: Dict[str, Any], message_type: Any) -> Any:
    return json_format.ParseDict(
        resource, message_type.pb(message_type()), ignore_unknown_fields=False
    )


def _strict(resource: Dict[str, Any], message_type: Any) -> Dict[str, Any]:
    """`resource` as the API would answer it, or ValueError if it is not one."""
    try:
        return proto_dict(_strict_pb(resource, message_type))
    except json_format.ParseError as e:
        raise ValueError(f"not a {message_type.__name__}: {e}") from e
