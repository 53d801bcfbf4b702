"""MovieLensGenerator: writes simulated logged interactions to BigQuery."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from bandit_core import data_contract
from bandit_core.policy_metadata import CLASSIC
from custom_components.movielens_generator import executor


class LoggedInteractions(artifact.Artifact):
    """A batch of logged interactions in a BigQuery table.

    Its facts (table, event_id_prefix, rows_in_batch, rows_written,
    rewards_clipped) are custom properties: Vertex Pipelines accepts custom
    artifact types only with a namespaced name and no declared PROPERTIES.
    """

    TYPE_NAME = "mlbandits.LoggedInteractions"


class MovieLensGeneratorSpec(types.ComponentSpec):
    """Simulation and destination settings in, a LoggedInteractions artifact out."""

    PARAMETERS = {
        "movielens_dir": ExecutionParameter(type=str),
        "rank_k": ExecutionParameter(type=int),
        "num_actions": ExecutionParameter(type=int),
        "num_events": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
        "bigquery_project": ExecutionParameter(type=str),
        "bigquery_dataset": ExecutionParameter(type=str),
        "bigquery_table": ExecutionParameter(type=str),
        "bigquery_rest_endpoint": ExecutionParameter(type=str, optional=True),
        "bigquery_grpc_endpoint": ExecutionParameter(type=str, optional=True),
        "problem": ExecutionParameter(type=str, optional=True),
        "num_candidates": ExecutionParameter(type=int, optional=True),
        "noise_sd": ExecutionParameter(type=float, optional=True),
        "user_demographics": ExecutionParameter(type=int, optional=True),
        "movie_metadata": ExecutionParameter(type=int, optional=True),
        "bigquery_items_table": ExecutionParameter(type=str, optional=True),
        "reward_min": ExecutionParameter(type=float, optional=True),
        "reward_max": ExecutionParameter(type=float, optional=True),
        "min_propensity": ExecutionParameter(type=float, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {"logged_interactions": ChannelParameter(type=LoggedInteractions)}


class MovieLensGenerator(base_component.BaseComponent):
    """Runs a uniform-random logging policy on simulated MovieLens users.

    Its rows land in the same table schema the serving logger writes, so the
    training and retraining DAGs read both the same way. On the per-arm
    problem it also writes every movie's features to the items table, once
    per feature version; events carry movie ids only.

    Every row keeps the data contract (`reward_min`, `reward_max` and
    `min_propensity` are its bounds): simulated rewards are ratings on a
    bounded scale, so an observed reward outside [reward_min, reward_max]
    (SVD estimates can overshoot, and rating noise is unbounded) is clipped
    to the nearer bound, and the count is recorded as `rewards_clipped`.
    Any other broken rule stops the Generator before it writes.
    """

    SPEC_CLASS = MovieLensGeneratorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        movielens_dir: str,
        rank_k: int,
        num_actions: int,
        num_events: int,
        seed: int,
        bigquery_project: str,
        bigquery_dataset: str,
        bigquery_table: str,
        bigquery_rest_endpoint: str = "",
        bigquery_grpc_endpoint: str = "",
        problem: str = CLASSIC,
        num_candidates: int = 50,
        noise_sd: float = 1.0,
        user_demographics: bool = False,
        movie_metadata: bool = False,
        bigquery_items_table: str = "items",
        reward_min: float = data_contract.REWARD_MIN,
        reward_max: float = data_contract.REWARD_MAX,
        min_propensity: float = data_contract.MIN_PROPENSITY,
    ):
        super().__init__(
            spec=MovieLensGeneratorSpec(
                movielens_dir=movielens_dir,
                rank_k=rank_k,
                num_actions=num_actions,
                num_events=num_events,
                seed=seed,
                bigquery_project=bigquery_project,
                bigquery_dataset=bigquery_dataset,
                bigquery_table=bigquery_table,
                bigquery_rest_endpoint=bigquery_rest_endpoint,
                bigquery_grpc_endpoint=bigquery_grpc_endpoint,
                problem=problem,
                num_candidates=num_candidates,
                noise_sd=noise_sd,
                user_demographics=int(user_demographics),
                movie_metadata=int(movie_metadata),
                bigquery_items_table=bigquery_items_table,
                reward_min=reward_min,
                reward_max=reward_max,
                min_propensity=min_propensity,
                logged_interactions=types.Channel(type=LoggedInteractions),
            )
        )
