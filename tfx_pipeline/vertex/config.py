"""Settings for running the pipelines on Vertex AI, as the `vertex` config section.

`validate()` checks only what is set, so the defaults pass and a purely local
run needs no `vertex` section at all. `require_ready()` is what the Vertex
commands call: it also insists on everything a run on Google Cloud needs, so a
missing or malformed setting stops the command before any request is sent.
"""

from __future__ import annotations

import dataclasses
import re
import zoneinfo

from bandit_core.errors import require as _require
from bandit_core.whole_numbers import is_whole_number
from custom_components.vertex_experiments import (
    ExperimentTarget,
    experiment_name_problem,
    tensorboard_problem,
)

TRAINING_IN_PIPELINE = "pipeline"
TRAINING_VERTEX_JOB = "vertex_training_job"

_PROJECT = re.compile(r"^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_BUCKET_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
_SERVICE_ACCOUNT = re.compile(r"^[a-z0-9-]+@[a-z0-9.-]+\.gserviceaccount\.com$")
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
_API_ENDPOINT = re.compile(r"^(https?://)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_TAG_OR_DIGEST = r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})"
_PATH = r"(/[a-z0-9]+([._-][a-z0-9]+)*)"
# Vertex AI pulls custom containers from Artifact Registry and Container Registry only.
_IMAGE = re.compile(
    rf"^([a-z0-9-]+-docker\.pkg\.dev/[a-z0-9.:-]+{_PATH}{_PATH}+"
    rf"|([a-z]+\.)?gcr\.io/[a-z0-9.:-]+{_PATH}+){_TAG_OR_DIGEST}$"
)
_IMAGE_HELP = (
    "must be an Artifact Registry (REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE) or "
    "Container Registry (gcr.io/PROJECT/IMAGE) image with a :tag or @sha256: digest"
)
_REQUIRED = {
    "project": "the Google Cloud project id",
    "region": "the Vertex AI region, e.g. us-central1",
    "pipeline_root": "a gs:// directory for pipeline outputs",
    "service_account": "the email of the service account the runs act as",
    "pipeline_image": "the image built from docker/pipeline.Dockerfile",
    "serving_image": "the image built from docker/serving.Dockerfile",
}
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
    ),
    ("day of week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


@dataclasses.dataclass(frozen=True)
class VertexConfig:
    """Where and how the pipelines run on Vertex AI and the policy is served.

    Attributes:
      project: Google Cloud project of the pipeline runs and the endpoint.
      region: Vertex AI region (pipelines, endpoint, Dataflow, training jobs).
      pipeline_root: gs:// directory for component outputs.
      service_account: the runs, the endpoint and Dataflow workers act as it.
      pipeline_image: image of every pipeline step (and of Dataflow workers).
      serving_image: the prediction server the endpoint runs.
      bigquery_project: project of the BigQuery dataset; empty means `project`.
      endpoint_name: display name of the one long-lived Vertex endpoint.
      serving_machine_type, serving_min_replicas, serving_max_replicas: the
        endpoint's deployed model resources.
      canary_traffic_percent: a newly pushed model's share of the endpoint's
        traffic while the previous model keeps the rest, until the next run's
        evaluation promotes or rolls it back; 0 switches all traffic at once.
      dataflow: run Beam steps on Dataflow instead of in the step's container.
      dataflow_machine_type, dataflow_max_workers: Dataflow worker shape.
      temp_location: gs:// scratch for Beam and BigQuery exports; empty means
        `<pipeline_root>/tmp`.
      training: "pipeline" trains in the pipeline step, "vertex_training_job"
        as a Vertex custom training job on `training_machine_type`.
      retrain_cron: when the retraining DAG runs (Vertex schedule, UTC unless
        prefixed with CRON_TZ=Zone).
      api_endpoint: Vertex API endpoint override; empty means the regional one.
      experiment: a Vertex AI Experiments name; when set, each pipeline run
        becomes a run of it (the trainer's and the evaluator's parameters and
        metrics); empty records nothing.
      tensorboard: full name of a Vertex TensorBoard instance
        (projects/P/locations/R/tensorboards/ID) in `region` that backs the
        experiment: the runs' TensorBoard scalars become time series there.
    """

    project: str = ""
    region: str = ""
    pipeline_root: str = ""
    service_account: str = ""
    pipeline_image: str = ""
    serving_image: str = ""
    bigquery_project: str = ""
    endpoint_name: str = "movielens-bandits"
    serving_machine_type: str = "n1-standard-2"
    serving_min_replicas: int = 1
    serving_max_replicas: int = 1
    canary_traffic_percent: int = 0
    dataflow: bool = False
    dataflow_machine_type: str = "n1-standard-4"
    dataflow_max_workers: int = 4
    temp_location: str = ""
    training: str = TRAINING_IN_PIPELINE
    training_machine_type: str = "n1-standard-4"
    retrain_cron: str = "0 3 * * *"
    api_endpoint: str = ""
    experiment: str = ""
    tensorboard: str = ""

    @property
    def beam_temp_location(self) -> str:
        return self.temp_location or f"{self.pipeline_root.rstrip('/')}/tmp"

    @property
    def bigquery_project_id(self) -> str:
        return self.bigquery_project or self.project

    @property
    def experiment_target(self) -> ExperimentTarget | None:
        """Where the trainer and evaluator record the run, or None without `experiment`."""
        if not self.experiment:
            return None
        return ExperimentTarget(
            project=self.project,
            region=self.region,
            experiment=self.experiment,
            tensorboard=self.tensorboard,
            api_endpoint=self.api_endpoint,
        )

    def validate(self) -> None:
        """Checks the format of every setting that is set."""
        _check(self.project, _PROJECT, "vertex.project", "is not a Google Cloud project id")
        _check(
            self.bigquery_project,
            _PROJECT,
            "vertex.bigquery_project",
            "is not a Google Cloud project id",
        )
        _check(self.region, _REGION, "vertex.region", "is not a region name like us-central1")
        _check(
            self.pipeline_root,
            _BUCKET_URI,
            "vertex.pipeline_root",
            "must start with gs:// and name a bucket: Vertex AI Pipelines write to "
            "Cloud Storage",
        )
        _check(
            self.temp_location,
            _BUCKET_URI,
            "vertex.temp_location",
            "must start with gs:// and name a bucket",
        )
        _check(
            self.service_account,
            _SERVICE_ACCOUNT,
            "vertex.service_account",
            "must be a service account email (NAME@PROJECT.iam.gserviceaccount.com)",
        )
        _check(self.pipeline_image, _IMAGE, "vertex.pipeline_image", _IMAGE_HELP)
        _check(self.serving_image, _IMAGE, "vertex.serving_image", _IMAGE_HELP)
        _check(
            self.api_endpoint,
            _API_ENDPOINT,
            "vertex.api_endpoint",
            "must be a host[:port], optionally with http:// or https://",
        )
        _require(
            bool(self.endpoint_name) and len(self.endpoint_name) <= 128,
            "vertex.endpoint_name",
            "must be 1 to 128 characters (a Vertex endpoint display name)",
        )
        for field in ("serving_machine_type", "dataflow_machine_type", "training_machine_type"):
            _check(
                getattr(self, field),
                _MACHINE_TYPE,
                f"vertex.{field}",
                "is not a machine type like n1-standard-4",
            )
        _require(self.serving_min_replicas >= 1, "vertex.serving_min_replicas", "must be >= 1")
        _require(
            self.serving_max_replicas >= self.serving_min_replicas,
            "vertex.serving_max_replicas",
            "must be >= vertex.serving_min_replicas",
        )
        _require(
            0 <= self.canary_traffic_percent <= 99,
            "vertex.canary_traffic_percent",
            f"{self.canary_traffic_percent} must be 0 (switch all traffic to the new model) or "
            "the new model's share in 1-99",
        )
        _require(self.dataflow_max_workers >= 1, "vertex.dataflow_max_workers", "must be >= 1")
        _require(
            self.training in (TRAINING_IN_PIPELINE, TRAINING_VERTEX_JOB),
            "vertex.training",
            f"{self.training!r} is not one of {TRAINING_IN_PIPELINE}, {TRAINING_VERTEX_JOB}",
        )
        problem = cron_problem(self.retrain_cron)
        _require(problem is None, "vertex.retrain_cron", f"{self.retrain_cron!r}: {problem}")
        self._validate_experiment()

    def _validate_experiment(self) -> None:
        if self.experiment:
            problem = experiment_name_problem(self.experiment)
            _require(problem is None, "vertex.experiment", f"{self.experiment!r} {problem}")
        if not self.tensorboard:
            return
        _require(
            bool(self.experiment),
            "vertex.tensorboard",
            "is set but vertex.experiment is empty: the TensorBoard backs an experiment; set "
            "vertex.experiment too, or leave vertex.tensorboard empty",
        )
        problem = tensorboard_problem(self.tensorboard, self.project, self.region)
        _require(problem is None, "vertex.tensorboard", f"{self.tensorboard!r} {problem}")

    def require_ready(self) -> "VertexConfig":
        """Checks that everything a Vertex command needs is set and well formed."""
        for field, meaning in _REQUIRED.items():
            _require(bool(getattr(self, field)), f"vertex.{field}", f"missing; set it to {meaning}")
        self.validate()
        return self


def cron_problem(expression: str) -> str | None:
    """What is wrong with a Vertex schedule cron expression, or None if nothing.

    Vertex accepts five unix-cron fields, optionally prefixed with
    `CRON_TZ=<IANA zone>` or `TZ=<IANA zone>`.
    """
    fields = expression.split()
    if fields and fields[0].startswith(("CRON_TZ=", "TZ=")):
        zone = fields.pop(0).split("=", 1)[1]
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"unknown time zone {zone!r}"
    if len(fields) != 5:
        return "needs 5 fields (minute hour day-of-month month day-of-week)"
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            if not _cron_item_ok(item.upper(), low, high, names):
                return f"{item!r} is not a valid {name} ({low}-{high})"
    return None


def _cron_item_ok(item: str, low: int, high: int, names: tuple) -> bool:
    base, slash, step = item.partition("/")
    if slash and not (is_whole_number(step) and int(step) >= 1):
        return False
    if base == "*":
        return True
    bounds = base.split("-")
    if len(bounds) > 2:
        return False
    values = []
    for bound in bounds:
        if is_whole_number(bound):
            values.append(int(bound))
        elif bound in names:
            values.append(names.index(bound) + low)
        else:
            return False
    return all(low <= v <= high for v in values) and values == sorted(values)


def _check(value: str, pattern: re.Pattern, setting: str, message: str) -> None:
    if value:
        _require(bool(pattern.match(value)), setting, f"{value!r} {message}")
