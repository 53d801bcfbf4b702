"""Runs the training or retraining DAG with LocalDagRunner and a SQLite MLMD store.

Locally BigQuery is the emulator, started here on free loopback ports and
stopped when the run ends, whether it succeeds, fails or is interrupted.
"""

import contextlib
import pathlib
from typing import Iterator

from tfx import v1 as tfx

from bandit_core.bigquery.clients import BigQueryEndpoints
from tfx_pipeline import pipeline
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.local.emulator import BigQueryEmulator

BEAM_PIPELINE_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


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
            beam_pipeline_args=BEAM_PIPELINE_ARGS,
        )
    )
