"""One pipeline run as a Vertex AI Experiments run: parameters, summary metrics, time series.

It writes what `google.cloud.aiplatform`'s `ExperimentRun` writes (SDK 1.69,
`metadata/experiment_run_resource.py`), through explicit `aiplatform_v1` REST
calls so that every request can be read and checked:

- the experiment: Context `<experiment>` of schema `system.Experiment` in the
  region's `default` metadata store, metadata `{"experiment_deleted": false}`
  plus `backing_tensorboard_resource` when a TensorBoard backs it;
- the run: Context `<experiment>-<run>` of schema `system.ExperimentRun`,
  display name `<run>`, a child of the experiment, whose metadata holds
  `_params`, `_metrics` (merged key by key, as `log_params`/`log_metrics` do)
  and `_state`;
- with a TensorBoard: the TensorBoard experiment and run (`vertex_tensorboard`)
  and Artifact `<experiment>-<run>-tb-run` of schema `google.VertexTensorboardRun`
  attributed to the run context; the console finds the time series through it.

The trainer and the evaluator of one pipeline run write into the same run, each
what it knows; creating what exists already is not an error, so a retried step
reuses everything. The step's properties `vertex_experiment` (an
`ExperimentTarget` as JSON) and `vertex_experiment_run` (the run's name; on
Vertex AI Pipelines the pipeline job name) say where; without them nothing is sent.

It sits beside the components that use it rather than in `bandit_core`,
because the serving image copies `bandit_core` and must not need aiplatform.
"""

import dataclasses
import json
import math
import re
from typing import Any, Dict, Mapping, Optional, Union

from google.api_core import exceptions as api_exceptions
from google.cloud import aiplatform_v1
from google.protobuf import field_mask_pb2, json_format

from custom_components.vertex_calls import (
    DEFAULT_RETRY_SECONDS,
    VertexCaller,
    VertexCallError,
    VertexLocation,
)
from custom_components.vertex_tensorboard import (
    TensorboardRunWriter,
    read_scalars,
)

EXPERIMENT_PROPERTY = "vertex_experiment"
RUN_PROPERTY = "vertex_experiment_run"
METADATA_STORE = "default"
SYSTEM_EXPERIMENT = "system.Experiment"
SYSTEM_EXPERIMENT_RUN = "system.ExperimentRun"
TENSORBOARD_RUN_ARTIFACT = "google.VertexTensorboardRun"
SCHEMA_VERSION = "0.0.1"
PARAMS_KEY, METRICS_KEY, STATE_KEY = "_params", "_metrics", "_state"
BACKING_TENSORBOARD_KEY = "backing_tensorboard_resource"
RUNNING, COMPLETE = "RUNNING", "COMPLETE"
# A context id is 4-128 of [a-z0-9-] (CreateContextRequest.context_id); a TensorBoard
# run id 1-128 of the same. The SDK keeps a run's context id to 128 - len("-tb-run").
EXPERIMENT_NAME = re.compile(r"[a-z0-9-]{4,128}")
RUN_NAME = re.compile(r"[a-z0-9-]{1,128}")
TENSORBOARD_RUN_SUFFIX = "-tb-run"
MAX_RUN_ID = 128 - len(TENSORBOARD_RUN_SUFFIX)
TENSORBOARD = re.compile(r"projects/([a-z0-9.:-]+)/locations/([a-z0-9-]+)/tensorboards/([0-9]+)")
Value = Union[int, float, str]


def experiment_name_problem(name: str) -> Optional[str]:
    """Why `name` cannot name a Vertex AI experiment, or None."""
    if EXPERIMENT_NAME.fullmatch(name):
        return None
    return (
        "must be 4 to 128 lowercase letters, digits and hyphens (a Vertex AI Experiments "
        "name, e.g. movielens-bandits)"
    )


def tensorboard_problem(name: str, project: str, region: str) -> Optional[str]:
    """Why `name` cannot back an experiment in `project`/`region`, or None.

    A project number instead of the id cannot be compared offline and is accepted;
    an empty `project` or `region` is not compared.
    """
    match = TENSORBOARD.fullmatch(name)
    if not match:
        return (
            "must be a TensorBoard instance's full name, projects/PROJECT/locations/REGION/"
            "tensorboards/ID (`gcloud ai tensorboards list --region REGION` shows it)"
        )
    tensorboard_project, tensorboard_region, _ = match.groups()
    if region and tensorboard_region != region:
        return (
            f"is in {tensorboard_region}, but an experiment's TensorBoard must be in its region "
            f"({region}): use an instance in {region}"
        )
    if project and not tensorboard_project.isdigit() and tensorboard_project != project:
        return (
            f"is in project {tensorboard_project}, but an experiment's TensorBoard must be in "
            f"its project ({project})"
        )
    return None


def run_name_problem(experiment: str, run: str) -> Optional[str]:
    """Why `run` cannot name a run of `experiment`, or None."""
    if not RUN_NAME.fullmatch(run):
        return (
            f"run name {run!r} must be 1 to 128 lowercase letters, digits and hyphens; on "
            "Vertex AI Pipelines it is the pipeline job's name, filled in by Vertex AI"
        )
    run_id = f"{experiment}-{run}"
    if len(run_id) > MAX_RUN_ID:
        return (
            f"the run's id {run_id!r} is {len(run_id)} characters, over Vertex AI's "
            f"{MAX_RUN_ID}: shorten vertex.experiment"
        )
    return None


@dataclasses.dataclass(frozen=True)
class ExperimentTarget:
    """Which experiment a run goes to, and where: the `vertex_experiment` property as JSON."""

    project: str
    region: str
    experiment: str
    tensorboard: str = ""
    api_endpoint: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ExperimentTarget":
        """Parses and checks the property; a bad one raises VertexCallError saying why."""
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            values = json.loads(text)
        except ValueError as e:
            raise VertexCallError(f"{EXPERIMENT_PROPERTY} {text!r} is not JSON: {e}") from e
        if not isinstance(values, dict) or not values.keys() <= fields or not all(
            isinstance(v, str) for v in values.values()
        ):
            raise VertexCallError(
                f"{EXPERIMENT_PROPERTY} {text!r} must be a JSON object of strings with the keys "
                f"{', '.join(sorted(fields))}; compile the pipeline again with `mlbandits vertex "
                "compile`"
            )
        try:
            target = cls(**values)
        except TypeError as e:
            raise VertexCallError(f"{EXPERIMENT_PROPERTY} {text!r} is incomplete: {e}") from e
        target.check()
        return target

    def check(self) -> None:
        """Raises VertexCallError naming the setting that is wrong."""
        for field in ("project", "region"):
            if not getattr(self, field):
                raise VertexCallError(f"invalid setting vertex.{field}: missing")
        tensorboard = self.tensorboard
        problems = (
            ("vertex.experiment", self.experiment, experiment_name_problem(self.experiment)),
            (
                "vertex.tensorboard",
                tensorboard,
                tensorboard and tensorboard_problem(tensorboard, self.project, self.region),
            ),
        )
        for setting, value, problem in problems:
            if problem:
                raise VertexCallError(f"invalid setting {setting}: {value!r} {problem}")

    @property
    def console_url(self) -> str:
        """The experiment's page in the Cloud console (the SDK's `Experiment.dashboard_url`)."""
        return (
            "https://console.cloud.google.com/vertex-ai/experiments/locations/"
            f"{self.region}/experiments/{self.experiment}?project={self.project}"
        )


class ExperimentsWriter:
    """Records runs into one Vertex AI experiment, and their scalars into its TensorBoard."""

    def __init__(self, target: ExperimentTarget, retry_seconds: float = DEFAULT_RETRY_SECONDS):
        target.check()
        self._target = target
        self._caller = VertexCaller(
            VertexLocation(target.project, target.region, target.api_endpoint), retry_seconds
        )
        self._metadata = self._caller.location.client(aiplatform_v1.MetadataServiceClient)
        self._store = f"{self._caller.location.parent}/metadataStores/{METADATA_STORE}"
        self._tensorboard = (
            TensorboardRunWriter(self._caller, target.tensorboard) if target.tensorboard else None
        )

    def log_run(
        self,
        run: str,
        params: Mapping[str, Value],
        metrics: Mapping[str, Value],
        state: str,
        scalars_logdir: Optional[str] = None,
    ) -> str:
        """Creates or reuses run `run`; merges its params and metrics; sets its state.

        With a TensorBoard configured, the scalars of the TensorBoard log directory
        `scalars_logdir` become the run's time series. Returns the run's context name.
        """
        problem = run_name_problem(self._target.experiment, run)
        if problem:
            raise VertexCallError(f"cannot record the run in Vertex AI Experiments: {problem}")
        for kind, values in (("param", params), ("metric", metrics)):
            for key, value in values.items():
                _check_value(kind, key, value)
        if self._tensorboard is not None:
            self._tensorboard.check_tensorboard()
        experiment = self._context(
            self._target.experiment, self._target.experiment, SYSTEM_EXPERIMENT,
            {"experiment_deleted": False},
        )
        run_id = f"{self._target.experiment}-{run}"
        empty_run = {PARAMS_KEY: {}, METRICS_KEY: {}, STATE_KEY: RUNNING}
        run_context = self._context(run_id, run, SYSTEM_EXPERIMENT_RUN, empty_run)
        self._caller.call(
            f"add run {run} to experiment {self._target.experiment}",
            self._metadata.add_context_children,
            context=experiment.name,
            child_contexts=[run_context.name],
        )
        self._update(
            run_context.name,
            {PARAMS_KEY: dict(params), METRICS_KEY: dict(metrics), STATE_KEY: state},
        )
        if self._tensorboard is not None:
            self._back_with_tensorboard(experiment)
            tensorboard_run = self._tensorboard.ensure_run(self._target.experiment, run)
            self._attribute_tensorboard_run(run_context.name, run_id, tensorboard_run)
            if scalars_logdir:
                self._tensorboard.write(tensorboard_run, read_scalars(scalars_logdir))
        return run_context.name

    def _context(
        self, context_id: str, display_name: str, schema_title: str, metadata: Dict[str, Any]
    ) -> aiplatform_v1.Context:
        """Creates the context, or reads it when it exists; it must have `schema_title`."""
        name = f"{self._store}/contexts/{context_id}"
        try:
            return self._caller.call(
                f"create {schema_title} {context_id}",
                self._metadata.create_context,
                (api_exceptions.Conflict,),
                parent=self._store,
                context_id=context_id,
                context=aiplatform_v1.Context(
                    display_name=display_name,
                    schema_title=schema_title,
                    schema_version=SCHEMA_VERSION,
                    metadata=metadata,
                ),
            )
        except api_exceptions.Conflict:
            existing = self._caller.call(f"read {name}", self._metadata.get_context, name=name)
        if existing.schema_title != schema_title:
            raise VertexCallError(
                f"invalid setting vertex.experiment: {name} exists with schema "
                f"{existing.schema_title!r}, not {schema_title!r} (it is not an experiment's); "
                "choose another vertex.experiment"
            )
        return existing

    def _update(self, name: str, changes: Dict[str, Any]) -> None:
        """Merges `changes` into the context's metadata one level deep, as the SDK's update does."""
        current = self._caller.call(f"read {name}", self._metadata.get_context, name=name)
        metadata = _metadata(current)
        for key, value in changes.items():
            if isinstance(value, dict):
                metadata[key] = {**metadata.get(key, {}), **value}
            else:
                metadata[key] = value
        self._caller.call(
            f"record the params and metrics of {name}",
            self._metadata.update_context,
            context=aiplatform_v1.Context(name=name, metadata=metadata),
            update_mask=field_mask_pb2.FieldMask(paths=["metadata"]),
        )

    def _back_with_tensorboard(self, experiment: aiplatform_v1.Context) -> None:
        """Names the TensorBoard in the experiment, as `Experiment.assign_backing_tensorboard`."""
        backing = _metadata(experiment).get(BACKING_TENSORBOARD_KEY)
        if backing == self._target.tensorboard:
            return
        if backing:
            raise VertexCallError(
                f"invalid setting vertex.tensorboard: experiment {self._target.experiment} is "
                f"backed by {backing}; set vertex.tensorboard to it, or choose a new "
                "vertex.experiment for the new TensorBoard"
            )
        self._update(experiment.name, {BACKING_TENSORBOARD_KEY: self._target.tensorboard})

    def _attribute_tensorboard_run(
        self, run_context: str, run_id: str, tensorboard_run: str
    ) -> None:
        """The artifact through which the console finds the run's time series."""
        artifact_id = f"{run_id}{TENSORBOARD_RUN_SUFFIX}"
        artifact = f"{self._store}/artifacts/{artifact_id}"
        try:
            self._caller.call(
                f"create artifact {artifact_id}",
                self._metadata.create_artifact,
                (api_exceptions.Conflict,),
                parent=self._store,
                artifact_id=artifact_id,
                artifact=aiplatform_v1.Artifact(
                    uri=self._caller.location.rest_url(tensorboard_run),
                    schema_title=TENSORBOARD_RUN_ARTIFACT,
                    schema_version=SCHEMA_VERSION,
                    state=aiplatform_v1.Artifact.State.LIVE,
                    metadata={"resourceName": tensorboard_run, "vertex_experiment_tracking": True},
                ),
            )
        except api_exceptions.Conflict:
            pass  # made by an earlier attempt of this step or by the other step of the run
        self._caller.call(
            f"attribute {artifact_id} to {run_context}",
            self._metadata.add_context_artifacts_and_executions,
            context=run_context,
            artifacts=[artifact],
        )


def log_pipeline_run(
    exec_properties: Mapping[str, Any],
    params: Mapping[str, Value],
    metrics: Mapping[str, Value],
    state: str,
    scalars_logdir: str,
    saved: str,
) -> Optional[str]:
    """Records a step's values when its properties name an experiment; None when they do not.

    Called after the step wrote its outputs; `saved` says what they are and where
    ("the trained policy is saved in gs://..."), so that a failure to record
    (VertexCallError) tells the user nothing is lost and what to do. Returns the
    experiment's console URL.
    """
    target_json = exec_properties.get(EXPERIMENT_PROPERTY)
    if not target_json:
        return None
    try:
        target = ExperimentTarget.from_json(target_json)
        run = exec_properties.get(RUN_PROPERTY) or ""
        ExperimentsWriter(target).log_run(run, params, metrics, state, scalars_logdir)
    except VertexCallError as e:
        raise VertexCallError(
            f"{e}. {saved}, but this run is not recorded in Vertex AI Experiments as "
            "vertex.experiment asks: fix the cause and run the pipeline again, or leave "
            "vertex.experiment empty to run without recording"
        ) from e
    return target.console_url


def _check_value(kind: str, key: str, value: Any) -> None:
    """Vertex stores numbers and strings; a NaN or an infinity has no JSON form."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{kind} {key!r}: {value!r} is not a number or a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{kind} {key!r} is {value}; leave undefined values out")


def _metadata(context: aiplatform_v1.Context) -> Dict[str, Any]:
    return json_format.MessageToDict(aiplatform_v1.Context.pb(context).metadata)
