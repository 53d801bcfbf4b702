"""What Vertex AI checks in a pipeline, schedule, model or endpoint request before acting on it.

The fake control plane (`fake_vertex_server`) applies these rules so that a request
the real API would refuse is refused here too, with the HTTP status and the
google.rpc.Status body Google answers with. Bodies and query strings are parsed
strictly into the `google.cloud.aiplatform_v1` request types, and a pipeline
job's `pipelineSpec` strictly into KFP's `PipelineSpec`; ids, labels and cron
expressions follow the rules of the v1 API reference (aiplatform_v1 docstrings):
a pipeline job id is `[a-z0-9][a-z0-9-]{0,127}`; a label key or value holds at
most 64 lowercase (also international) letters, digits, `_` or `-`, and a key
starts with a letter; a cron is five unix-cron fields with an optional
`TZ=`/`CRON_TZ=` IANA time zone prefix. An endpoint's traffic split names only
its deployed models and adds up to 100 (or is empty: no traffic); a deployed
model still holding traffic is not undeployed while others remain; a custom
container model is deployed on dedicated machines. Vertex ML Metadata ids are
4-128 of `[a-z0-9-]` and a context's or artifact's metadata at most 200 KB; a
TensorBoard experiment or run id is 1-128 of `[a-z0-9-]`, a time series id
`[a-z0-9][a-z0-9-]{0,127}`; one TensorBoard write holds at most 5000 points.
"""

import json
import re
import zoneinfo
from typing import Any, Dict, Iterable, Optional, Type, TypeVar

import proto
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

PIPELINE_JOB_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,127}", re.ASCII)
MAX_LABELS = 64
MAX_LABEL_LENGTH = 64
MAX_DISPLAY_NAME = 128
METADATA_ID = re.compile(r"[a-z0-9-]{4,128}", re.ASCII)
TENSORBOARD_ID = re.compile(r"[a-z0-9-]{1,128}", re.ASCII)
TIME_SERIES_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,127}", re.ASCII)
MAX_METADATA_BYTES = 200 * 1024
MAX_POINTS_PER_WRITE = 5000
ENDPOINT_ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8}", re.ASCII)
_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_CRON_ITEM = re.compile(r"(\*|(\w+)(?:-(\w+))?)(?:/([0-9]+))?", re.ASCII)

Message = TypeVar("Message", bound=proto.Message)


class ApiError(Exception):
    """A refusal, answered as Google answers it: an HTTP status and a google.rpc.Status."""

    def __init__(self, code: int, message_text: str, status: str = "") -> None:
        super().__init__(message_text)
        self.code = code
        self.status = status or _STATUS[code]

    def body(self) -> Dict[str, dict]:
        return {"error": {"code": self.code, "message": str(self), "status": self.status}}


def invalid(message_text: str) -> ApiError:
    return ApiError(400, message_text)


def failed_precondition(message_text: str) -> ApiError:
    """The request is well formed but the resource's state does not allow it."""
    return ApiError(400, message_text, "FAILED_PRECONDITION")


def parse_body(raw: bytes, message_type: Type[Message]) -> Message:
    """The body as `message_type`; unknown fields, wrong types and duplicate keys are refused."""
    try:
        if not isinstance(json.loads(raw or b"null"), dict):
            raise ValueError("the body must be a JSON object")
        pb = json_format.Parse(raw, message_type.pb(message_type()), ignore_unknown_fields=False)
    except (ValueError, json_format.ParseError) as e:
        raise invalid(f"Invalid JSON payload received. {e}") from e
    return message_type.wrap(pb)


def parse_request_body(raw: bytes, request_type: Type[Message], path_field: str) -> Message:
    """A request whose body is the whole message (`body: "*"`) less the field the URL binds."""
    request = parse_body(raw, request_type)
    if getattr(raw_message(request), path_field):
        raise invalid(
            f'Invalid JSON payload received. Unknown name "{path_field}": it is bound by the URL '
            "path."
        )
    return request


def parse_query(
    query: Dict[str, str], request_type: Type[Message], bound: Iterable[str]
) -> Message:
    """The query parameters as fields of `request_type`, less those bound by path and body.

    `$alt` is the REST transport's response-format system parameter.
    """
    fields = {k: v for k, v in query.items() if k != "$alt"}
    for name in fields:
        if name in bound:
            raise invalid(
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query '
                "parameter. It is bound by the URL path or the request body."
            )
    try:
        pb = json_format.ParseDict(
            fields, request_type.pb(request_type()), ignore_unknown_fields=False
        )
    except json_format.ParseError as e:
        raise invalid(f"Invalid JSON payload received. Cannot bind query parameter: {e}") from e
    return request_type.wrap(pb)


def check_pipeline_job_id(job_id: str) -> None:
    if not PIPELINE_JOB_ID.fullmatch(job_id):
        raise invalid(
            f"Invalid pipeline job id {job_id!r}: it must match the regular expression "
            f"{PIPELINE_JOB_ID.pattern} (lowercase letters, digits and hyphens, at most 128)."
        )


def raw_message(message: Any) -> Any:
    """The protobuf message under a proto-plus one, or the message itself.

    Once a protobuf `Any` has been parsed in the process (a client reading a
    long-running operation does), the C++ runtime makes new classes for the
    packed type's messages and proto-plus hands their nested fields back
    unwrapped, so the checks read nested messages as raw protobuf.
    """
    return type(message).pb(message) if isinstance(message, proto.Message) else message


def check_resource_id(resource_id: str, pattern: re.Pattern, field: str) -> None:
    """An id the caller chose, against the rule its request type documents."""
    if not pattern.fullmatch(resource_id):
        raise invalid(
            f"Invalid {field} {resource_id!r}: it must match the regular expression "
            f"{pattern.pattern}."
        )


def check_metadata_size(metadata: Any, field: str) -> None:
    """A metadata Struct of at most 200 KB, as Vertex ML Metadata allows."""
    size = len(json.dumps(metadata, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise invalid(f"{field} is {size} bytes; the limit is {MAX_METADATA_BYTES}.")


def check_pipeline_job(job: Any) -> None:
    """A pipeline job Vertex would start: a real pipeline spec, a gs:// root, valid labels."""
    pb = raw_message(job)
    check_display_name(job.display_name, "PipelineJob.display_name")
    check_labels(job.labels)
    if not pb.HasField("pipeline_spec"):
        if job.template_uri:
            raise invalid("PipelineJob.template_uri is not served by this fake; send pipeline_spec")
        raise invalid("PipelineJob.pipeline_spec is required (or template_uri).")
    try:
        spec = json_format.ParseDict(
            json_format.MessageToDict(pb.pipeline_spec),
            pipeline_spec_pb2.PipelineSpec(),
            ignore_unknown_fields=False,
        )
    except json_format.ParseError as e:
        raise invalid(f"Invalid PipelineJob.pipeline_spec: {e}") from e
    for field, present in (
        ("pipelineInfo.name", spec.pipeline_info.name),
        ("schemaVersion", spec.schema_version),
        ("root", spec.HasField("root")),
    ):
        if not present:
            raise invalid(f"Invalid PipelineJob.pipeline_spec: {field} is required.")
    root = job.runtime_config.gcs_output_directory or spec.default_pipeline_root
    if not root.startswith("gs://"):
        raise invalid(
            "PipelineJob.runtime_config.gcs_output_directory must be a Cloud Storage path "
            f"(gs://bucket/dir), got {root!r}."
        )


def check_schedule(schedule: aiplatform_v1.Schedule, parent: str) -> None:
    """A schedule Vertex would create: a name, a valid cron, a run limit, a valid job request."""
    if not schedule.display_name:
        raise invalid("Schedule.display_name is required.")
    check_display_name(schedule.display_name, "Schedule.display_name")
    pb = aiplatform_v1.Schedule.pb(schedule)
    if pb.WhichOneof("time_specification") != "cron":
        raise invalid("Schedule.cron is required.")
    problem = cron_problem(schedule.cron)
    if problem:
        raise invalid(f"Invalid Schedule.cron {schedule.cron!r}: {problem}.")
    if schedule.max_concurrent_run_count < 1:
        raise invalid("Schedule.max_concurrent_run_count is required and must be positive.")
    if pb.WhichOneof("request") != "create_pipeline_job_request":
        raise invalid("Schedule.create_pipeline_job_request is required.")
    request = schedule.create_pipeline_job_request
    if request.parent != parent:
        raise invalid(
            f"Schedule.create_pipeline_job_request.parent must be {parent!r} (the schedule's "
            f"location), got {request.parent!r}."
        )
    if request.pipeline_job_id:
        check_pipeline_job_id(request.pipeline_job_id)
    check_pipeline_job(request.pipeline_job)


def check_endpoint_id(endpoint_id: str) -> None:
    if not ENDPOINT_ID.fullmatch(endpoint_id):
        raise invalid(
            f"Invalid endpoint id {endpoint_id!r}: either up to 63 lowercase letters, digits "
            "and hyphens starting with a letter and not ending with a hyphen, or up to 9 "
            "digits without a leading zero."
        )


def check_endpoint(endpoint: Any) -> None:
    """An endpoint Vertex would create or keep: a display name and valid labels."""
    if not endpoint.display_name:
        raise invalid("Endpoint.display_name is required.")
    check_display_name(endpoint.display_name, "Endpoint.display_name")
    check_labels(endpoint.labels)


def check_uploaded_model(model: Any) -> None:
    """A custom-container Model Vertex would register: a name, an image, a gs:// artifact."""
    if not model.display_name:
        raise invalid("Model.display_name is required.")
    check_display_name(model.display_name, "Model.display_name")
    check_labels(model.labels)
    if not model.container_spec.image_uri:
        raise invalid("Model.container_spec.image_uri is required for a custom container.")
    if model.artifact_uri and not model.artifact_uri.startswith("gs://"):
        raise invalid(
            f"Model.artifact_uri must be a Cloud Storage directory (gs://...), got "
            f"{model.artifact_uri!r}."
        )


def check_dedicated_resources(deployed: Any) -> None:
    """A custom-container model is served on dedicated machines, at least one replica."""
    pb = raw_message(deployed)
    if pb.WhichOneof("prediction_resources") != "dedicated_resources":
        raise invalid(
            "DeployedModel.dedicated_resources is required: a model with a custom container "
            "is served on dedicated machines."
        )
    resources = pb.dedicated_resources
    if not resources.machine_spec.machine_type:
        raise invalid("DeployedModel.dedicated_resources.machine_spec.machine_type is required.")
    if resources.min_replica_count < 1:
        raise invalid("DeployedModel.dedicated_resources.min_replica_count must be at least 1.")
    if resources.max_replica_count and resources.max_replica_count < resources.min_replica_count:
        raise invalid(
            "DeployedModel.dedicated_resources.max_replica_count must not be less than "
            "min_replica_count."
        )


def check_traffic_split(split: Dict[str, int], allowed_ids: Iterable[str], field: str) -> None:
    """Every id is one of `allowed_ids`; the percentages add up to 100, or the map is empty."""
    allowed = set(allowed_ids)
    for deployed_id, percent in split.items():
        if deployed_id not in allowed:
            raise invalid(
                f"{field} refers to DeployedModel {deployed_id!r}, which is not deployed to "
                f"the Endpoint (deployed: {sorted(allowed) or 'none'})."
            )
        if not 0 <= percent <= 100:
            raise invalid(f"{field} gives {deployed_id!r} {percent}%; each value is 0 to 100.")
    if split and sum(split.values()) != 100:
        raise invalid(
            f"{field} must add up to 100 (or be empty for no traffic); it adds up to "
            f"{sum(split.values())}."
        )


def check_display_name(name: str, field: str) -> None:
    if len(name) > MAX_DISPLAY_NAME:
        raise invalid(f"{field} is {len(name)} characters long; the limit is {MAX_DISPLAY_NAME}.")


def check_labels(labels: Dict[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise invalid(f"At most {MAX_LABELS} labels are allowed, got {len(labels)}.")
    for key, value in labels.items():
        if not (key[:1] and _lowercase_letter(key[0]) and _label_text_ok(key)) or not (
            _label_text_ok(value)
        ):
            raise invalid(
                f"Invalid label {key!r}: {value!r}: keys start with a lowercase letter; keys "
                f"and values hold at most {MAX_LABEL_LENGTH} lowercase letters, digits, '_' "
                "or '-'."
            )


def _label_text_ok(text: str) -> bool:
    """International lowercase letters count as letters, as Google's label rules allow."""
    return len(text) <= MAX_LABEL_LENGTH and all(
        _lowercase_letter(c) or (c.isascii() and c.isdigit()) or c in "_-" for c in text
    )


def _lowercase_letter(char: str) -> bool:
    return char.isalpha() and not char.isupper()


def cron_problem(cron: str) -> Optional[str]:
    """Why `cron` is not a Vertex schedule cron, or None."""
    fields = cron.split()
    if fields and fields[0].startswith(("TZ=", "CRON_TZ=")):
        zone = fields.pop(0).split("=", 1)[1]
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"{zone!r} is not an IANA time zone"
    if len(fields) != len(_CRON_FIELDS):
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            if not _cron_item_ok(item.upper(), low, high, names):
                return f"{item!r} is not a valid {name} (values {low}-{high})"
    return None


def _cron_item_ok(item: str, low: int, high: int, names: tuple) -> bool:
    match = _CRON_ITEM.fullmatch(item)
    if not match:
        return False
    whole, start, end, step = match.groups()
    if step is not None and int(step) < 1:
        return False
    if whole == "*":
        return True
    values = [_cron_value(v, low, names) for v in (start, end) if v is not None]
    return (
        all(v is not None and low <= v <= high for v in values) and values == sorted(values)
    )


def _cron_value(text: str, low: int, names: tuple) -> Optional[int]:
    if text.isdigit() and text.isascii():
        return int(text)
    if text in names:
        return names.index(text) + low
    return None


def proto_dict(value: Any) -> dict:
    """A message as the REST JSON the API answers with (camelCase names)."""
    return json_format.MessageToDict(raw_message(value))

