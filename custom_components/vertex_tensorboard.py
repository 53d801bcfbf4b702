"""A TensorBoard log directory's scalars, mirrored into a Vertex AI TensorBoard run.

Vertex AI Experiments draws an experiment run's time series from a backing
TensorboardRun: `<tensorboard>/experiments/<experiment>/runs/<run>`, one
SCALAR TensorboardTimeSeries per tag, the same resources the SDK's
`ExperimentRun.log_time_series_metrics` creates. The points are read back from
the event files the step wrote, as Google's TensorBoard uploader does, so the
console shows exactly what the local TensorBoard shows: same tags, steps,
values and wall times. Histograms stay in the local event files.

Every create is idempotent: an existing experiment, run or series is reused,
and a rewritten step overwrites its value (WriteTensorboardRunData's rule), so
a retried step leaves one point per step.
"""

import dataclasses
import datetime
from typing import Any, Callable, Dict, Iterator, List, Sequence

from google.api_core import exceptions as api_exceptions
from google.cloud import aiplatform_v1
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from custom_components.vertex_calls import VertexCaller, VertexCallError

SCALAR_PLUGIN = "scalars"
MAX_POINTS_PER_WRITE = 5000  # WriteTensorboardRunDataRequest's limit
# The label the SDK puts on TensorBoard experiments that back a Vertex AI experiment.
EXPERIMENT_SOURCE_LABEL = {"vertex_tensorboard_experiment_source": "vertex_experiment"}
_KEEP_ALL = {"tensors": 0}
_SCALAR = aiplatform_v1.TensorboardTimeSeries.ValueType.SCALAR


@dataclasses.dataclass(frozen=True)
class ScalarPoint:
    """One point of a TensorBoard scalar chart."""

    tag: str
    step: int
    value: float
    wall_time: float  # seconds since the epoch, as in the event file


def read_scalars(logdir: str) -> List[ScalarPoint]:
    """Every scalar summary below `logdir`, read with TensorBoard's own reader."""
    accumulator = EventAccumulator(logdir, size_guidance=_KEEP_ALL)
    accumulator.Reload()
    return [
        ScalarPoint(tag, event.step, float(tensor_util.make_ndarray(event.tensor_proto)),
                    event.wall_time)
        for tag in accumulator.Tags()["tensors"]
        if accumulator.SummaryMetadata(tag).plugin_data.plugin_name == SCALAR_PLUGIN
        for event in accumulator.Tensors(tag)
    ]


class TensorboardRunWriter:
    """Creates or reuses a TensorBoard experiment and run in `tensorboard` and writes scalars."""

    def __init__(self, caller: VertexCaller, tensorboard: str):
        self._caller = caller
        self._tensorboard = tensorboard
        self._client = caller.location.client(aiplatform_v1.TensorboardServiceClient)

    def check_tensorboard(self) -> None:
        """Fails with the fix when the configured instance does not exist."""
        try:
            self._caller.call(
                "read the TensorBoard instance",
                self._client.get_tensorboard,
                (api_exceptions.NotFound,),
                name=self._tensorboard,
            )
        except api_exceptions.NotFound as e:
            raise VertexCallError(
                f"invalid setting vertex.tensorboard: {self._tensorboard} does not exist "
                f"({e.message}); create one with `gcloud ai tensorboards create --region "
                f"{self._caller.location.region}` and copy its name, or leave "
                "vertex.tensorboard empty"
            ) from e

    def ensure_run(self, experiment: str, run: str) -> str:
        """The resource name of TensorboardRun `run` of TensorboardExperiment `experiment`."""
        experiment_name = self._create_or_get(
            f"create TensorBoard experiment {experiment}",
            self._client.create_tensorboard_experiment,
            self._client.get_tensorboard_experiment,
            f"{self._tensorboard}/experiments/{experiment}",
            parent=self._tensorboard,
            tensorboard_experiment_id=experiment,
            tensorboard_experiment=aiplatform_v1.TensorboardExperiment(
                display_name=experiment, labels=EXPERIMENT_SOURCE_LABEL
            ),
        )
        return self._create_or_get(
            f"create TensorBoard run {run}",
            self._client.create_tensorboard_run,
            self._client.get_tensorboard_run,
            f"{experiment_name}/runs/{run}",
            parent=experiment_name,
            tensorboard_run_id=run,
            tensorboard_run=aiplatform_v1.TensorboardRun(display_name=run),
        )

    def write(self, run_name: str, points: Sequence[ScalarPoint]) -> None:
        """Writes `points` into the run, one time series per tag, at most 5000 points a request."""
        if not points:
            return
        series_ids = self._series_ids(run_name, sorted({p.tag for p in points}))
        for start in range(0, len(points), MAX_POINTS_PER_WRITE):
            chunk = points[start : start + MAX_POINTS_PER_WRITE]
            self._caller.call(
                f"write {len(chunk)} time series points to {run_name}",
                self._client.write_tensorboard_run_data,
                tensorboard_run=run_name,
                time_series_data=list(_time_series_data(chunk, series_ids)),
            )

    def _series_ids(self, run_name: str, tags: List[str]) -> Dict[str, str]:
        """tag -> TensorboardTimeSeries id, creating the series that do not exist yet."""
        existing = self._list_series(run_name)
        for tag in tags:
            if tag in existing:
                continue
            try:
                created = self._caller.call(
                    f"create time series {tag!r} in {run_name}",
                    self._client.create_tensorboard_time_series,
                    (api_exceptions.Conflict,),
                    parent=run_name,
                    tensorboard_time_series=aiplatform_v1.TensorboardTimeSeries(
                        display_name=tag, value_type=_SCALAR, plugin_name=SCALAR_PLUGIN
                    ),
                )
                existing[tag] = created.name.rsplit("/", 1)[-1]
            except api_exceptions.Conflict:
                existing = self._list_series(run_name)
        return existing

    def _list_series(self, run_name: str) -> Dict[str, str]:
        # Listed inside the call, so that every page's request is retried and explained.
        series = self._caller.call(
            f"list the time series of {run_name}",
            lambda **kwargs: list(self._client.list_tensorboard_time_series(**kwargs)),
            parent=run_name,
        )
        return {s.display_name: s.name.rsplit("/", 1)[-1] for s in series}

    def _create_or_get(
        self, what: str, create: Callable[..., Any], get: Callable[..., Any], name: str,
        **request: Any,
    ) -> str:
        try:
            return self._caller.call(what, create, (api_exceptions.Conflict,), **request).name
        except api_exceptions.Conflict:
            return self._caller.call(f"read {name}", get, name=name).name


def _time_series_data(
    points: Sequence[ScalarPoint], series_ids: Dict[str, str]
) -> Iterator[aiplatform_v1.TimeSeriesData]:
    by_tag: Dict[str, List[ScalarPoint]] = {}
    for point in points:
        by_tag.setdefault(point.tag, []).append(point)
    for tag, tag_points in by_tag.items():
        yield aiplatform_v1.TimeSeriesData(
            tensorboard_time_series_id=series_ids[tag],
            value_type=_SCALAR,
            values=[
                aiplatform_v1.TimeSeriesDataPoint(
                    scalar=aiplatform_v1.Scalar(value=p.value),
                    wall_time=datetime.datetime.fromtimestamp(p.wall_time, datetime.timezone.utc),
                    step=p.step,
                )
                for p in tag_points
            ],
        )
