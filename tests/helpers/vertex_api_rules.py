"""What Vertex AI checks in a PipelineJob or Schedule request before acting on it.

The fake control plane (`fake_vertex_server`) applies these rules so that a request
the real API would refuse is refused here too, with the HTTP status and the
google.rpc.Status body Google answers with. Bodies and query strings are parsed
strictly into the `google.cloud.aiplatform_v1` request types, and a pipeline
job's `pipelineSpec` strictly into KFP's `PipelineSpec`; ids, labels and cron
expressions follow the rules of the v1 API reference (aiplatform_v1 docstrings):
a pipeline job id is `[a-z0-9][a-z0-9-]{0,127}`; a label key or value holds at
most 64 lowercase (also international) letters, digits, `_` or `-`, and a key
starts with a letter; a cron is five unix-cron fields with an optional
`TZ=`/`CRON_TZ=` IANA time zone prefix.
"""

import json
import re
import zoneinfo
from typing import Dict, Iterable, Optional, Type, TypeVar

import proto
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

PIPELINE_JOB_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,127}", re.ASCII)
MAX_LABELS = 64
MAX_LABEL_LENGTH = 64
MAX_DISPLAY_NAME = 128
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

    def __init__(self, code: int, message_text: str) -> None:
        super().__init__(message_text)
        self.code = code

    def body(self) -> Dict[str, dict]:
        return {"error": {"code": self.code, "message": str(self), "status": _STATUS[self.code]}}


def invalid(message_text: str) -> ApiError:
    return ApiError(400, message_text)


def parse_body(raw: bytes, message_type: Type[Message]) -> Message:
    """The body as `message_type`; unknown fields, wrong types and duplicate keys are refused."""
    try:
        if not isinstance(json.loads(raw or b"null"), dict):
            raise ValueError("the body must be a JSON object")
        pb = json_format.Parse(raw, message_type.pb(message_type()), ignore_unknown_fields=False)
    except (ValueError, json_format.ParseError) as e:
        raise invalid(f"Invalid JSON payload received. {e}") from e
    return message_type.wrap(pb)


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


def check_pipeline_job(job: aiplatform_v1.PipelineJob) -> None:
    """A pipeline job Vertex would start: a real pipeline spec, a gs:// root, valid labels."""
    pb = aiplatform_v1.PipelineJob.pb(job)
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


def proto_dict(value: proto.Message) -> dict:
    """A message as the REST JSON the API answers with (camelCase names)."""
    return json_format.MessageToDict(type(value).pb(value))

