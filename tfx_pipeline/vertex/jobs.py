"""Submits a compiled DAG to Vertex AI Pipelines or schedules it, or shows the request.

The clients use the REST transport everywhere, so the tests' local Vertex
server exercises the same code path a real submission takes. A dry run builds
the same aiplatform objects and returns the request body they would send,
without opening a connection or looking for credentials: aiplatform asks
google-auth for them while building, and a dry run should work on a machine
that has none.
"""

import json
import pathlib
from typing import Any, Dict, Optional

from google.auth import credentials as auth_credentials
from google.cloud import aiplatform

from tfx_pipeline.config import ConfigError
from tfx_pipeline.vertex.config import VertexConfig

SCHEDULE_SUFFIX = "schedule"
_CONSOLE = "https://console.cloud.google.com/vertex-ai/locations"


class VertexJobError(RuntimeError):
    """Vertex refused, or would conflict with, what was asked."""


def schedule_display_name(pipeline_name: str) -> str:
    return f"{pipeline_name}-{SCHEDULE_SUFFIX}"


def check_compiled_job(path: pathlib.Path, vertex: VertexConfig, pipeline_name: str) -> None:
    """Checks a compiled pipeline job is the pipeline and image configured.

    A stale file compiled for another DAG or another image would otherwise
    run silently with the wrong code.
    """
    try:
        spec = json.loads(pathlib.Path(path).read_text())
        name = spec["pipelineSpec"]["pipelineInfo"]["name"]
        executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{path} is not a compiled Vertex pipeline job: {e}") from e
    if name != pipeline_name:
        raise ConfigError(f"{path} holds pipeline {name!r}, not {pipeline_name!r}")
    for executor, body in executors.items():
        if "container" not in body:
            continue  # resolver nodes are metadata queries that Vertex runs itself
        image = body["container"].get("image")
        if image != vertex.pipeline_image:
            raise ConfigError(
                f"invalid setting vertex.pipeline_image: {path} runs {executor} in {image!r}, "
                f"not {vertex.pipeline_image!r}; recompile with `mlbandits vertex compile`"
            )


def compiled_pipeline_name(path: pathlib.Path) -> str:
    return json.loads(pathlib.Path(path).read_text())["pipelineSpec"]["pipelineInfo"]["name"]


def build_pipeline_job(
    path: pathlib.Path, vertex: VertexConfig, dry_run: bool = False
) -> aiplatform.PipelineJob:
    """The PipelineJob for a compiled file; building it sends nothing."""
    vertex.require_ready()
    _init(vertex)
    return aiplatform.PipelineJob(
        display_name=compiled_pipeline_name(path),
        template_path=str(path),
        pipeline_root=vertex.pipeline_root,
        project=vertex.project,
        location=vertex.region,
        credentials=_credentials(vertex, dry_run),
    )


def pipeline_job_request(job: aiplatform.PipelineJob, vertex: VertexConfig) -> Dict[str, Any]:
    """The CreatePipelineJob request `submit` sends, as JSON."""
    resource = job.to_dict()
    resource["serviceAccount"] = vertex.service_account
    return {"parent": _parent(vertex), "pipelineJobId": job.job_id, "pipelineJob": resource}


def submit(path: pathlib.Path, vertex: VertexConfig, dry_run: bool = False) -> Dict[str, Any]:
    """Starts one run of a compiled DAG; with `dry_run` returns the request instead."""
    job = build_pipeline_job(path, vertex, dry_run)
    request = pipeline_job_request(job, vertex)
    if dry_run:
        return request
    job.submit(service_account=vertex.service_account)
    console = f"{_CONSOLE}/{vertex.region}/pipelines/runs/{job.job_id}?project={vertex.project}"
    return {"pipelineJob": job.resource_name, "console": console}


def schedule_request(
    schedule: aiplatform.PipelineJobSchedule, vertex: VertexConfig
) -> Dict[str, Any]:
    """The CreateSchedule request `schedule` sends, as JSON."""
    resource = schedule.to_dict()
    resource["cron"] = vertex.retrain_cron
    resource["maxConcurrentRunCount"] = "1"
    resource["createPipelineJobRequest"]["pipelineJob"]["serviceAccount"] = vertex.service_account
    return {"parent": _parent(vertex), "schedule": resource}


def schedule(path: pathlib.Path, vertex: VertexConfig, dry_run: bool = False) -> Dict[str, Any]:
    """Runs a compiled DAG on `vertex.retrain_cron`, at most one run at a time.

    Refuses when a schedule of the same name exists, since two schedules
    would retrain twice as often; with `dry_run` returns the request instead.
    """
    job = build_pipeline_job(path, vertex, dry_run)
    name = schedule_display_name(compiled_pipeline_name(path))
    pending = aiplatform.PipelineJobSchedule(
        pipeline_job=job,
        display_name=name,
        project=vertex.project,
        location=vertex.region,
        credentials=_credentials(vertex, dry_run),
    )
    request = schedule_request(pending, vertex)
    if dry_run:
        return request
    existing = aiplatform.PipelineJobSchedule.list(
        filter=f'display_name="{name}"',
        project=vertex.project,
        location=vertex.region,
        credentials=_credentials(vertex),
    )
    if existing:
        raise VertexJobError(
            f"schedule {name!r} already exists ({existing[0].resource_name}); delete it in the "
            "console (Vertex AI > Pipelines > Schedules) before creating it again"
        )
    pending.create(
        cron=vertex.retrain_cron,
        max_concurrent_run_count=1,
        service_account=vertex.service_account,
    )
    return {
        "schedule": pending.resource_name,
        "cron": vertex.retrain_cron,
        "console": f"{_CONSOLE}/{vertex.region}/pipelines/schedules?project={vertex.project}",
    }


def _init(vertex: VertexConfig) -> None:
    """aiplatform's process-wide defaults; a dry run's credentials go to its objects only."""
    aiplatform.init(
        project=vertex.project,
        location=vertex.region,
        api_endpoint=vertex.api_endpoint or f"{vertex.region}-aiplatform.googleapis.com",
        api_transport="rest",
        credentials=_credentials(vertex),
    )


def _credentials(
    vertex: VertexConfig, dry_run: bool = False
) -> Optional[auth_credentials.Credentials]:
    """Application default credentials, except for a dry run or a plaintext (local) endpoint.

    A dry run sends nothing, so it needs no identity. Google's endpoints are
    HTTPS only, so an http:// endpoint is a local stand-in that must not
    receive real tokens.
    """
    if dry_run or vertex.api_endpoint.startswith("http://"):
        return auth_credentials.AnonymousCredentials()
    return None


def _parent(vertex: VertexConfig) -> str:
    return f"projects/{vertex.project}/locations/{vertex.region}"
