"""What Vertex AI Pipelines' jobs add to Vertex ML Metadata: runs, steps, keys and types.

Vertex ML Metadata holds a TFX run's artifacts, executions and the events
between them, but not which run or step an execution was, the input or output
key an artifact was passed under, or the types its numbers had: TFX writes
every number into a `metadata` Struct, where an int becomes a double. A
pipeline job's details have the rest: each task's name, execution, and input
and output artifacts by key; its compiled pipeline spec types each task's
parameters and the properties of each output artifact.
"""

import dataclasses
from typing import Any, Dict, Iterable, List, Set, Tuple

import yaml
from google.protobuf import json_format

from tfx_pipeline.lineage.lineage_store import PipelineRun, RunExecution
from tfx_pipeline.lineage.store import LineageError, iso_time

DAG_EXECUTION = "system.DagExecution"  # a run's (or sub-DAG's) own execution, not a step
INPUT, OUTPUT = "INPUT", "OUTPUT"
_RUN_STATUS = {
    "PIPELINE_STATE_SUCCEEDED": "COMPLETE",
    "PIPELINE_STATE_FAILED": "FAILED",
    "PIPELINE_STATE_CANCELLING": "CANCELED",
    "PIPELINE_STATE_CANCELLED": "CANCELED",
    "PIPELINE_STATE_QUEUED": "INCOMPLETE",
    "PIPELINE_STATE_PENDING": "INCOMPLETE",
    "PIPELINE_STATE_RUNNING": "INCOMPLETE",
    "PIPELINE_STATE_PAUSED": "INCOMPLETE",
}
# Vertex spells one execution state differently from MLMD.
_EXECUTION_STATE = {"CANCELLED": "CANCELED", "STATE_UNSPECIFIED": "UNKNOWN"}


@dataclasses.dataclass(frozen=True)
class Step:
    """One task of one pipeline run; `order` sorts runs by creation."""

    pipeline: str
    run_id: str
    node: str
    order: Tuple[int, str]
    parameter_types: Dict[str, str]


@dataclasses.dataclass
class RunIndex:
    """Runs and steps of every pipeline job, by execution and artifact id."""

    runs: List[PipelineRun] = dataclasses.field(default_factory=list)
    step_of_execution: Dict[int, Step] = dataclasses.field(default_factory=dict)
    steps_of_artifact: Dict[int, List[Step]] = dataclasses.field(default_factory=dict)
    # (execution id, artifact id, INPUT or OUTPUT) -> [(key, index)]
    keys: Dict[Tuple[int, int, str], List[Tuple[str, int]]] = dataclasses.field(
        default_factory=dict
    )
    # artifact id -> its typed properties and their instance-schema types, from its producer
    property_types: Dict[int, Dict[str, str]] = dataclasses.field(default_factory=dict)
    schema_titles: Set[str] = dataclasses.field(default_factory=set)


def build_run_index(jobs: Iterable[Any]) -> RunIndex:
    """The index of raw `aiplatform_v1` PipelineJob messages, oldest run first."""
    index = RunIndex()
    for job in sorted(jobs, key=_job_order):
        _add_job(index, job)
    return index


def resource_id(name: str) -> int:
    """The numeric id ending a Vertex resource name, as MLMD numbers its records."""
    last = name.rsplit("/", 1)[-1]
    if not (last.isascii() and last.isdigit()):
        raise LineageError(
            f"{name} has a non-numeric id; only what Vertex AI Pipelines records (numeric "
            "ids) can be traced; look at it in the console under Vertex AI > Metadata"
        )
    return int(last)


def millis(timestamp: Any) -> int:
    """A protobuf Timestamp in MLMD's milliseconds since the epoch."""
    return timestamp.seconds * 1000 + timestamp.nanos // 1_000_000


def execution_state(vertex_state_name: str) -> str:
    return _EXECUTION_STATE.get(vertex_state_name, vertex_state_name)


def _job_order(job: Any) -> Tuple[int, str]:
    return (millis(job.create_time), job.name)


def _add_job(index: RunIndex, job: Any) -> None:
    spec = json_format.MessageToDict(job.pipeline_spec)
    pipeline = spec.get("pipelineInfo", {}).get("name") or job.display_name
    run_id = job.name.rsplit("/", 1)[-1]
    executions = []
    for task in job.job_detail.task_details:
        if not task.execution.name or task.execution.schema_title == DAG_EXECUTION:
            continue
        component = _component(spec, task.task_name)
        step = Step(
            pipeline=pipeline,
            run_id=run_id,
            node=task.task_name,
            order=_job_order(job),
            parameter_types=_parameter_types(component),
        )
        execution_id = resource_id(task.execution.name)
        index.step_of_execution[execution_id] = step
        _add_artifacts(index, step, execution_id, INPUT, task.inputs)
        _add_artifacts(index, step, execution_id, OUTPUT, task.outputs)
        for key, artifacts in task.outputs.items():
            types = _property_types(component, key)
            for artifact in artifacts.artifacts:
                index.property_types[resource_id(artifact.name)] = types
        executions.append(task.execution)
    executions.sort(key=lambda e: (millis(e.create_time), resource_id(e.name)))
    index.runs.append(
        PipelineRun(
            pipeline=pipeline,
            run_id=run_id,
            status=_RUN_STATUS.get(enum_name(job, "state"), "UNKNOWN"),
            start=iso_time(millis(job.start_time)),
            end=iso_time(millis(job.end_time)),
            executions=[_run_execution(index, e) for e in executions],
        )
    )


def _run_execution(index: RunIndex, execution: Any) -> RunExecution:
    execution_id = resource_id(execution.name)
    return RunExecution(
        node=index.step_of_execution[execution_id].node,
        execution_id=execution_id,
        state=execution_state(enum_name(execution, "state")),
        start=iso_time(millis(execution.create_time)),
        end=iso_time(millis(execution.update_time)),
    )


def enum_name(message: Any, field: str) -> str:
    """The name of an enum field's value in a raw protobuf message."""
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    return enum.values_by_number[getattr(message, field)].name


def _add_artifacts(index: RunIndex, step: Step, execution_id: int, kind: str, by_key: Any) -> None:
    for key, artifacts in by_key.items():
        for position, artifact in enumerate(artifacts.artifacts):
            artifact_id = resource_id(artifact.name)
            index.keys.setdefault((execution_id, artifact_id, kind), []).append((key, position))
            index.steps_of_artifact.setdefault(artifact_id, []).append(step)
            index.schema_titles.add(artifact.schema_title)


def _component(spec: Dict[str, Any], task_name: str) -> Dict[str, Any]:
    task = spec.get("root", {}).get("dag", {}).get("tasks", {}).get(task_name, {})
    return spec.get("components", {}).get(task.get("componentRef", {}).get("name", ""), {})


def _parameter_types(component: Dict[str, Any]) -> Dict[str, str]:
    """Each input parameter's type: `parameterType` (KFP IR 2.1) or the legacy `type`."""
    parameters = component.get("inputDefinitions", {}).get("parameters", {})
    return {name: p.get("parameterType") or p.get("type", "") for name, p in parameters.items()}


def _property_types(component: Dict[str, Any], output_key: str) -> Dict[str, str]:
    """Typed properties of an output from its instance schema, e.g. {"span": "integer"}."""
    artifact = component.get("outputDefinitions", {}).get("artifacts", {}).get(output_key, {})
    schema = artifact.get("artifactType", {}).get("instanceSchema", "")
    try:
        properties = (yaml.safe_load(schema) or {}).get("properties") or {}
    except yaml.YAMLError:
        return {}
    return {name: (p or {}).get("type", "") for name, p in properties.items()}
