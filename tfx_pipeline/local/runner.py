"""Runs the training or retraining DAG with LocalDagRunner and a SQLite MLMD store.

Locally BigQuery is the emulator, started here on free loopback ports and
stopped when the run ends, whether it succeeds, fails or is interrupted. The
Beam steps run on Beam's DirectRunner with `local.beam_workers` workers.
"""

import contextlib
import os
import pathlib
from typing import Iterator, List

from tfx import v1 as tfx

from bandit_core.bigquery.clients import BigQueryEndpoints
from tfx_pipeline import pipeline
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.local.emulator import BigQueryEmulator

IN_PROCESS_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def beam_pipeline_args(beam_workers: int) -> List[str]:
    """DirectRunner arguments for `local.beam_workers` (0: one worker per available core).

    One worker runs in the pipeline's process. Several run as processes:
    in_memory mode with more than one worker hangs once a DoFn runs
    TensorFlow, so that combination is never produced.
    """
    workers = beam_workers or available_cores()
    if workers == 1:
        return list(IN_PROCESS_ARGS)
    return ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


@contextlib.contextmanager
def bigquery_endpoints(config: PipelineConfig) -> Iterator[BigQueryEndpoints]:
    """Real BigQuery, or an emulator that lives as long as the context."""
    if not config.bigquery.use_emulator:
        yield BigQueryEndpoints(project=config.bigquery.project)
        return
    data_dir = (
        pathlib.Path(config.bigquery.emulator_data_dir)
        if config.bigquery.emulator_data_dir
        else config.local.root_dir / "bigquery"
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    with BigQueryEmulator(project=config.bigquery.project, data_dir=data_dir) as emulator:
        yield emulator.endpoints


def run_pipeline(
    config: PipelineConfig, endpoints: BigQueryEndpoints, retraining: bool = False
) -> None:
    """Runs one DAG to completion; raises if any component fails."""
    local = config.local
    local.pipeline_root.mkdir(parents=True, exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(
        pipeline.create_pipeline(
            config,
            pipeline_root=str(local.pipeline_root),
            push_base_directory=str(local.serving_model_dir),
            endpoints=endpoints,
            retraining=retraining,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                str(local.metadata_path)
            ),
            beam_pipeline_args=beam_pipeline_args(local.beam_workers),
        )
    )
