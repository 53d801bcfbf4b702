"""The one pipeline definition shared by the local and the Vertex runner.

Everything that depends on where the pipeline runs (BigQuery endpoints, Beam
arguments, metadata store, push destination, where training runs) arrives as
an argument, so the runners stay a screen long and the DAG is the same
everywhere.
"""

from typing import Any, Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from bandit_core.bigquery.clients import BigQueryEndpoints
from custom_components.bandit_schema_gen.component import BanditSchemaGen
from custom_components.bandit_trainer.component import BanditTrainer
from custom_components.bandit_trainer.vertex_job import VertexJobBanditTrainer
from custom_components.bigquery_ingester.component import (
    bigquery_example_gen,
    bigquery_items_gen,
)
from custom_components.bigquery_ingester.queries import (
    build_accepted_query,
    build_examples_query,
    build_items_query,
    build_per_arm_examples_query,
    build_per_arm_serving_logs_query,
    build_serving_logs_query,
)
from custom_components.data_contract_gate.component import DataContractGate
from custom_components.movielens_generator.component import MovieLensGenerator
from custom_components.policy_evaluator.component import (
    PolicyEvaluator,
    latest_blessed_model_resolver,
)
from custom_components.vertex_pusher.settings import RolloutSettings
from tfx_pipeline import deploy
from tfx_pipeline.config import PipelineConfig

TRAINING_SUFFIX = "train"
RETRAINING_SUFFIX = "retrain"


def pipeline_name(config: PipelineConfig, retraining: bool) -> str:
    """Training and retraining are two pipelines sharing one metadata store."""
    return f"{config.pipeline_name}-{RETRAINING_SUFFIX if retraining else TRAINING_SUFFIX}"


def create_pipeline(
    config: PipelineConfig,
    pipeline_root: str,
    push_base_directory: str,
    endpoints: BigQueryEndpoints,
    retraining: bool = False,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    vertex_push: Optional[RolloutSettings] = None,
    vertex_training_job: Optional[Dict[str, Any]] = None,
    experiment_properties: Optional[Dict[str, str]] = None,
) -> tfx.dsl.Pipeline:
    """Builds the training DAG, or with `retraining` the same DAG minus the Generator.

    The DataContractGate runs before ExampleGen over the same rows: it
    quarantines those that break the data contract, and ExampleGen's query
    leaves them out, so one bad row no longer stops this run or the next.

    Args:
      config: the validated configuration.
      pipeline_root: where component outputs are written.
      push_base_directory: Pusher writes versioned policies below it.
      endpoints: BigQuery endpoints; emulator endpoints switch ExampleGen to
        the emulator-safe executor, real ones keep the stock executor.
      retraining: read logged data without generating any first.
      metadata_connection_config: MLMD store (None lets the runner choose).
      beam_pipeline_args: arguments for Beam-powered components.
      vertex_push: the VertexRolloutPusher's settings; when set the policy is
        uploaded to Vertex AI and rolled out on an endpoint instead of being
        copied below `push_base_directory`.
      vertex_training_job: custom_config of a Vertex custom training job; when
        set the trainer step runs the training there instead of in-process.
      experiment_properties: the trainer's and the evaluator's
        `vertex_experiment` and `vertex_experiment_run` parameters; when set
        both record the run in Vertex AI Experiments.
    """
    components = []
    bq, movielens, contract = config.bigquery, config.movielens, config.data_contract
    if not retraining:
        generator = MovieLensGenerator(
            movielens_dir=movielens.data_dir,
            rank_k=movielens.rank_k,
            num_actions=movielens.num_actions,
            num_events=config.generator.num_events,
            seed=config.generator.seed,
            bigquery_project=endpoints.project,
            bigquery_dataset=bq.dataset,
            bigquery_table=bq.table,
            bigquery_rest_endpoint=endpoints.rest_endpoint or "",
            bigquery_grpc_endpoint=endpoints.grpc_endpoint or "",
            problem=movielens.problem,
            num_candidates=movielens.num_candidates,
            noise_sd=movielens.noise_sd,
            user_demographics=movielens.user_demographics,
            movie_metadata=movielens.movie_metadata,
            bigquery_items_table=bq.items_table,
            reward_min=contract.reward_min,
            reward_max=contract.reward_max,
            min_propensity=contract.min_propensity,
        )
        components.append(generator)

    source_query = _source_query(config, endpoints.project, retraining)
    gate = DataContractGate(
        source_query=source_query,
        contract=contract,
        max_quarantined_share=config.ingestion.max_quarantined_share,
        endpoints=endpoints,
        dataset=bq.dataset,
        quarantine_table=bq.quarantine_table,
    )
    components.append(gate)
    example_gen = bigquery_example_gen(
        query=build_accepted_query(source_query, contract),
        train_buckets=config.ingestion.train_buckets,
        eval_buckets=config.ingestion.eval_buckets,
        endpoints=endpoints,
        scratch_dataset=bq.scratch_dataset,
    )
    items_gen = None
    if movielens.per_arm:
        items_gen = bigquery_items_gen(
            build_items_query(
                f"{endpoints.project}.{bq.dataset}.{bq.items_table}", movielens.feature_version
            ),
            endpoints,
            bq.scratch_dataset,
        )
        components.append(items_gen)
    example_gen.add_upstream_node(gate)
    if not retraining:
        gate.add_upstream_node(generator)
        if items_gen is not None:
            items_gen.add_upstream_node(generator)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = BanditSchemaGen(**contract.parameters)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    trainer_args = dict(
        examples=example_gen.outputs["examples"],
        example_anomalies=example_validator.outputs["anomalies"],
        observation_dim=movielens.observation_dim,
        num_actions=movielens.actions_per_round,
        settings=config.trainer,
        **(experiment_properties or {}),
    )
    if items_gen is not None:
        trainer_args.update(
            items=items_gen.outputs["examples"],
            arm_dim=movielens.arm_dim,
            feature_version=movielens.feature_version,
        )
    if vertex_training_job is None:
        trainer = BanditTrainer(**trainer_args)
    else:
        trainer = VertexJobBanditTrainer(custom_config=vertex_training_job, **trainer_args)
    baseline = latest_blessed_model_resolver()
    evaluator = PolicyEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        reward_min=config.validation.reward_min,
        reward_max=config.validation.reward_max,
        movielens_dir=movielens.data_dir,
        settings=config.evaluator,
        rank_k=movielens.rank_k,
        **(experiment_properties or {}),
    )
    pusher = deploy.pusher(
        trainer.outputs["model"],
        evaluator.outputs["blessing"],
        push_base_directory,
        vertex_push,
        evaluation=evaluator.outputs["evaluation"],
    )
    components += [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        trainer,
        baseline,
        evaluator,
        pusher,
    ]
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name(config, retraining),
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=False,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )


def _source_query(config: PipelineConfig, project: str, retraining: bool) -> str:
    """The rows the gate judges: training reads the logged-interactions table, retraining
    serving logs.

    Per-arm rows are joined to their served movie's features in the items table.
    """
    bq, ingestion, movielens = config.bigquery, config.ingestion, config.movielens
    if movielens.per_arm:
        items = f"{project}.{bq.dataset}.{bq.items_table}"
        if retraining:
            return build_per_arm_serving_logs_query(
                f"{project}.{bq.dataset}.{bq.predictions_table}",
                f"{project}.{bq.dataset}.{bq.rewards_table}",
                items,
                movielens.feature_version,
                ingestion.window_start,
                ingestion.window_end,
            )
        return build_per_arm_examples_query(
            f"{project}.{bq.dataset}.{bq.table}",
            items,
            movielens.feature_version,
            ingestion.window_start,
            ingestion.window_end,
            ingestion.source,
        )
    if retraining:
        return build_serving_logs_query(
            f"{project}.{bq.dataset}.{bq.predictions_table}",
            f"{project}.{bq.dataset}.{bq.rewards_table}",
            ingestion.window_start,
            ingestion.window_end,
        )
    return build_examples_query(
        f"{project}.{bq.dataset}.{bq.table}",
        ingestion.window_start,
        ingestion.window_end,
        ingestion.source,
    )
