"""A local run's ML Metadata as Vertex AI Pipelines would have recorded the same run.

Each MLMD artifact, execution and event becomes its Vertex ML Metadata
resource with the same numeric id, and each pipeline run a PipelineJob whose
details list its tasks, their executions and their input and output
artifacts by key. Values are written the way TFX's Vertex entrypoint writes
them (`kubeflow_v2_entrypoint_utils`): properties and custom properties share
one `metadata` Struct, every number a JSON number, and a custom property
named like a typed one gets the `custom:` prefix; parameters are the
execution's `input:<name>` entries, typed in the job's pipeline spec. A local
run id (a timestamp) is no valid job id, so each run gets one in `job_ids`.
"""

import dataclasses
import datetime
import re
from typing import Any, Dict, List, Tuple

import yaml
from google.protobuf import json_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_pipeline.lineage.vertex_values import CUSTOM_PREFIX, PARAMETER_PREFIX, schema_title

DAG_EXECUTION_IDS = 900_000  # a run's own execution, numbered apart from the steps'
PIPELINE_ROOT = "gs://lineage-bucket/pipeline-root"
_Event = metadata_store_pb2.Event
_INPUTS = {_Event.INPUT, _Event.DECLARED_INPUT, _Event.INTERNAL_INPUT}
_PARAMETER_TYPES = {
    "int_value": "NUMBER_INTEGER",
    "double_value": "NUMBER_DOUBLE",
    "string_value": "STRING",
    "struct_value": "STRUCT",
    "bool_value": "BOOLEAN",
}
_SCHEMA_TYPES = {
    metadata_store_pb2.INT: "integer",
    metadata_store_pb2.DOUBLE: "double",
    metadata_store_pb2.STRING: "string",
    metadata_store_pb2.STRUCT: "object",
    metadata_store_pb2.BOOLEAN: "boolean",
}
_EXECUTION_STATES = {"CANCELED": "CANCELLED", "UNKNOWN": "STATE_UNSPECIFIED"}
_TASK_STATES = {"COMPLETE": "SUCCEEDED", "CACHED": "SUCCEEDED", "CANCELED": "CANCELLED"}


@dataclasses.dataclass(frozen=True)
class VertexRecording:
    artifacts: List[Dict[str, Any]]
    executions: List[Dict[str, Any]]
    events: List[Dict[str, Any]]
    pipeline_jobs: List[Dict[str, Any]]
    job_ids: Dict[str, str]  # local run id -> pipeline job id

    def resources(self) -> Dict[str, List[Dict[str, Any]]]:
        """The arguments of `FakeMetadata.load`."""
        return {
            "artifacts": self.artifacts,
            "executions": self.executions,
            "events": self.events,
            "pipeline_jobs": self.pipeline_jobs,
        }


def record_on_vertex(store: metadata_store.MetadataStore, location: str) -> VertexRecording:
    """Everything in `store` as Vertex resources under `location` (projects/P/locations/L)."""
    metadata_store_name = f"{location}/metadataStores/default"
    types = {t.id: t for t in store.get_artifact_types()}
    nodes = _node_names(store)
    artifacts = {
        a.id: _artifact(a, types[a.type_id], metadata_store_name) for a in store.get_artifacts()
    }
    executions = {
        e.id: _execution(e, nodes.get(e.id, ""), metadata_store_name)
        for e in store.get_executions()
    }
    mlmd_events = store.get_events_by_execution_ids(list(executions))
    events = [
        {
            "artifact": artifacts[e.artifact_id]["name"],
            "execution": executions[e.execution_id]["name"],
            "eventTime": _time(e.milliseconds_since_epoch),
            "type": "INPUT" if e.type in _INPUTS else "OUTPUT",
        }
        for e in mlmd_events
    ]
    recording = VertexRecording(list(artifacts.values()), list(executions.values()), events, [], {})
    runs = sorted(
        store.get_contexts_by_type("pipeline_run"),
        key=lambda c: (c.create_time_since_epoch, c.id),
    )
    for number, run in enumerate(runs):
        (pipeline,) = store.get_parent_contexts_by_context(run.id)
        job_id = re.sub(r"[^a-z0-9-]", "", f"{pipeline.name}-{run.name}".lower())
        recording.job_ids[run.name] = job_id
        run_executions = sorted(
            store.get_executions_by_context(run.id), key=lambda e: (e.create_time_since_epoch, e.id)
        )
        dag = _dag_execution(DAG_EXECUTION_IDS + number, pipeline.name, run_executions)
        recording.executions.append(
            {**dag, "name": f"{metadata_store_name}/executions/{dag['name']}"}
        )
        recording.pipeline_jobs.append(
            _pipeline_job(
                location,
                job_id,
                pipeline.name,
                run,
                [(e, nodes[e.id], executions[e.id]) for e in run_executions],
                recording.executions[-1],
                mlmd_events,
                artifacts,
                types,
                store,
            )
        )
    return recording


def _node_names(store: metadata_store.MetadataStore) -> Dict[int, str]:
    names = {}
    for node in store.get_contexts_by_type("node"):
        for execution in store.get_executions_by_context(node.id):
            names[execution.id] = node.name.rsplit(".", 1)[-1]
    return names


def _artifact(
    artifact: metadata_store_pb2.Artifact, artifact_type: Any, metadata_store_name: str
) -> Dict[str, Any]:
    metadata = {name: _json(value) for name, value in artifact.properties.items()}
    for name, value in artifact.custom_properties.items():
        key = f"{CUSTOM_PREFIX}{name}" if name in artifact_type.properties else name
        metadata[key] = _json(value)
    resource = {
        "name": f"{metadata_store_name}/artifacts/{artifact.id}",
        "uri": artifact.uri,
        "schemaTitle": schema_title(artifact_type.name),
        "schemaVersion": "0.0.1",
        "metadata": metadata,
        "createTime": _time(artifact.create_time_since_epoch),
        "updateTime": _time(artifact.last_update_time_since_epoch),
    }
    state = metadata_store_pb2.Artifact.State.Name(artifact.state)
    if state in ("PENDING", "LIVE"):
        resource["state"] = state
    if artifact.name:
        resource["displayName"] = artifact.name
    return resource


def _execution(
    execution: metadata_store_pb2.Execution, node: str, metadata_store_name: str
) -> Dict[str, Any]:
    state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
    return {
        "name": f"{metadata_store_name}/executions/{execution.id}",
        "displayName": node,
        "state": _EXECUTION_STATES.get(state, state),
        "schemaTitle": "system.ContainerExecution",
        "schemaVersion": "0.0.1",
        "metadata": {
            f"{PARAMETER_PREFIX}{name}": _json(value)
            for name, value in execution.custom_properties.items()
        },
        "createTime": _time(execution.create_time_since_epoch),
        "updateTime": _time(execution.last_update_time_since_epoch),
    }


def _dag_execution(
    execution_id: int, pipeline: str, executions: List[metadata_store_pb2.Execution]
) -> Dict[str, Any]:
    """The execution Vertex records for the run itself (its name completed by the caller)."""
    return {
        "name": str(execution_id),
        "displayName": pipeline,
        "state": "COMPLETE",
        "schemaTitle": "system.DagExecution",
        "schemaVersion": "0.0.1",
        "createTime": _time(min(e.create_time_since_epoch for e in executions)),
        "updateTime": _time(max(e.last_update_time_since_epoch for e in executions)),
    }


def _pipeline_job(
    location: str,
    job_id: str,
    pipeline: str,
    run: metadata_store_pb2.Context,
    steps: List[Tuple[metadata_store_pb2.Execution, str, Dict[str, Any]]],
    dag: Dict[str, Any],
    events: List[metadata_store_pb2.Event],
    artifacts: Dict[int, Dict[str, Any]],
    types: Dict[int, Any],
    store: metadata_store.MetadataStore,
) -> Dict[str, Any]:
    states = {metadata_store_pb2.Execution.State.Name(e.last_known_state) for e, _, _ in steps}
    tasks = [
        {
            "taskId": "1",
            "taskName": pipeline,
            "createTime": dag["createTime"],
            "startTime": dag["createTime"],
            "endTime": dag["updateTime"],
            "state": "SUCCEEDED",
            "execution": dag,
        }
    ]
    components = {}
    for number, (execution, node, resource) in enumerate(steps, start=2):
        inputs, outputs = _task_artifacts(execution.id, events, artifacts)
        tasks.append(
            {
                "taskId": str(number),
                "parentTaskId": "1",
                "taskName": node,
                "createTime": resource["createTime"],
                "startTime": resource["createTime"],
                "endTime": resource["updateTime"],
                "state": _TASK_STATES.get(resource["state"], resource["state"]),
                "execution": resource,
                **({"inputs": inputs} if inputs else {}),
                **({"outputs": outputs} if outputs else {}),
            }
        )
        components[node] = _component(execution, outputs, types, store)
    return {
        "name": f"{location}/pipelineJobs/{job_id}",
        "displayName": pipeline,
        "createTime": _time(run.create_time_since_epoch),
        "startTime": dag["createTime"],
        "endTime": dag["updateTime"],
        "updateTime": dag["updateTime"],
        "state": _job_state(states),
        "pipelineSpec": {
            "pipelineInfo": {"name": pipeline},
            "schemaVersion": "2.1.0",
            "sdkVersion": "tfx-1.15.1",
            "root": {
                "dag": {
                    "tasks": {
                        node: {"taskInfo": {"name": node}, "componentRef": {"name": node}}
                        for _, node, _ in steps
                    }
                }
            },
            "components": components,
        },
        "runtimeConfig": {"gcsOutputDirectory": PIPELINE_ROOT},
        "jobDetail": {
            "pipelineContext": {"name": f"{location}/metadataStores/default/contexts/{pipeline}"},
            "pipelineRunContext": {"name": f"{location}/metadataStores/default/contexts/{job_id}"},
            "taskDetails": tasks,
        },
    }


def _task_artifacts(
    execution_id: int, events: List[metadata_store_pb2.Event], artifacts: Dict[int, Dict]
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The execution's input and output artifacts by event key, in path index order."""
    inputs: Dict[str, List[Tuple[int, Dict]]] = {}
    outputs: Dict[str, List[Tuple[int, Dict]]] = {}
    for event in events:
        if event.execution_id != execution_id:
            continue
        key = next(s.key for s in event.path.steps if s.HasField("key"))
        index = next((s.index for s in event.path.steps if s.HasField("index")), 0)
        side = inputs if event.type in _INPUTS else outputs
        side.setdefault(key, []).append((index, artifacts[event.artifact_id]))
    return tuple(
        {
            key: {"artifacts": [a for _, a in sorted(found, key=lambda f: f[0])]}
            for key, found in side.items()
        }
        for side in (inputs, outputs)
    )


def _component(
    execution: metadata_store_pb2.Execution,
    outputs: Dict[str, Any],
    types: Dict[int, Any],
    store: metadata_store.MetadataStore,
) -> Dict[str, Any]:
    """The step's component spec: its parameters' types and its outputs' property schemas."""
    component: Dict[str, Any] = {}
    parameters = {
        name: {"parameterType": _PARAMETER_TYPES[value.WhichOneof("value")]}
        for name, value in execution.custom_properties.items()
    }
    if parameters:
        component["inputDefinitions"] = {"parameters": parameters}
    schemas = {}
    for key, found in outputs.items():
        artifact_id = int(found["artifacts"][0]["name"].rsplit("/", 1)[-1])
        (artifact,) = store.get_artifacts_by_id([artifact_id])
        artifact_type = types[artifact.type_id]
        schema = {"title": schema_title(artifact_type.name), "type": "object"}
        if artifact_type.properties:
            schema["properties"] = {
                name: {"type": _SCHEMA_TYPES[kind]}
                for name, kind in artifact_type.properties.items()
            }
        schemas[key] = {"artifactType": {"instanceSchema": yaml.safe_dump(schema)}}
    if schemas:
        component["outputDefinitions"] = {"artifacts": schemas}
    return component


def _job_state(states: set) -> str:
    for state, job_state in (
        ("FAILED", "PIPELINE_STATE_FAILED"),
        ("CANCELED", "PIPELINE_STATE_CANCELLED"),
        ("RUNNING", "PIPELINE_STATE_RUNNING"),
        ("NEW", "PIPELINE_STATE_RUNNING"),
    ):
        if state in states:
            return job_state
    return "PIPELINE_STATE_SUCCEEDED"


def _json(value: metadata_store_pb2.Value) -> Any:
    """A value as TFX writes it into a Vertex `metadata` Struct."""
    which = value.WhichOneof("value")
    if which == "int_value":
        return float(value.int_value)
    if which == "struct_value":
        decoded = json_format.MessageToDict(value.struct_value)
        return decoded.get("__value__", decoded)
    return getattr(value, which)


def _time(ms_since_epoch: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms_since_epoch / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
