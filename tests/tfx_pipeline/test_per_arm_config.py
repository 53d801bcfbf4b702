"""The per-arm settings of the pipeline config, and the DAG they build.

Errors are checked through `load_config` on a JSON file, as a user meets them.
The DAG is only constructed, never run: what matters is which components
exist and how their channels connect.
"""

import json
import math

import pytest
from google.protobuf import json_format
from tfx import v1 as tfx
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2

from bandit_core import agent_names, columns
from bandit_core.bigquery.clients import BigQueryEndpoints
from custom_components.bigquery_ingester.component import ITEMS_EXAMPLE_GEN_ID
from simulation import movielens_data, movielens_per_arm
from tfx_pipeline import pipeline
from tfx_pipeline.config import ConfigError, PipelineConfig, load_config

PER_ARM = {"movielens": {"problem": "per_arm"}, "trainer": {"agent": "InteractionLinUCB"}}
# Endpoints of an emulator that is never started: construction does not connect.
ENDPOINTS = BigQueryEndpoints("local-proj", "http://127.0.0.1:9", "127.0.0.1:10")


def _write(tmp_path, content) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    return str(path)


def _load_error(tmp_path, content) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_config(_write(tmp_path, content))
    return str(excinfo.value)


def _per_arm(**movielens) -> dict:
    return {**PER_ARM, "movielens": {**PER_ARM["movielens"], **movielens}}


def test_problem_defaults_to_classic_and_per_arm_loads(tmp_path):
    assert PipelineConfig().movielens.problem == "classic"
    assert not PipelineConfig().movielens.per_arm
    config = load_config(_write(tmp_path, _per_arm(num_candidates=8, noise_sd=0)))
    assert config.movielens.per_arm
    assert (config.movielens.num_candidates, config.movielens.noise_sd) == (8, 0.0)
    assert config.movielens.actions_per_round == 8


@pytest.mark.parametrize(
    "movielens, setting",
    [
        ({"problem": "per-arm"}, "movielens.problem"),
        ({"problem": ""}, "movielens.problem"),
        ({"num_candidates": 1}, "movielens.num_candidates"),
        ({"num_candidates": movielens_data.NUM_ITEMS + 1}, "movielens.num_candidates"),
        ({"noise_sd": -0.1}, "movielens.noise_sd"),
        ({"noise_sd": math.inf}, "movielens.noise_sd"),
        ({"noise_sd": math.nan}, "movielens.noise_sd"),
    ],
)
def test_bad_per_arm_settings_name_the_setting(tmp_path, movielens, setting):
    assert f"invalid setting {setting}:" in _load_error(tmp_path, _per_arm(**movielens))


def test_a_bad_problem_lists_the_choices(tmp_path):
    message = _load_error(tmp_path, {"movielens": {"problem": "perarm"}})
    assert "'perarm'" in message and "classic" in message and "per_arm" in message


@pytest.mark.parametrize("num_candidates", [2, movielens_data.NUM_ITEMS])
def test_candidate_counts_at_the_bounds_are_accepted(tmp_path, num_candidates):
    config = load_config(_write(tmp_path, _per_arm(num_candidates=num_candidates)))
    assert config.movielens.num_candidates == num_candidates


def test_per_arm_problem_rejects_a_classic_agent_and_lists_the_per_arm_agents(tmp_path):
    message = _load_error(tmp_path, {**PER_ARM, "trainer": {"agent": "LinUCB"}})
    assert message.startswith("invalid setting trainer.agent:")
    assert "'LinUCB'" in message and "per_arm" in message
    listed = message.split("choose one of ", 1)[1]
    assert listed == ", ".join(agent_names.PER_ARM_AGENTS)


def test_classic_problem_rejects_a_per_arm_agent_and_lists_the_classic_agents(tmp_path):
    message = _load_error(tmp_path, {"trainer": {"agent": "InteractionLinUCB"}})
    assert message.startswith("invalid setting trainer.agent:")
    assert "'InteractionLinUCB'" in message and "classic" in message
    assert message.split("choose one of ", 1)[1] == ", ".join(agent_names.AGENTS)


@pytest.mark.parametrize("agent", agent_names.PER_ARM_AGENTS)
def test_every_per_arm_agent_fits_the_per_arm_problem(tmp_path, agent):
    content = {**PER_ARM, "trainer": {"agent": agent}}
    assert load_config(_write(tmp_path, content)).trainer.agent == agent


@pytest.mark.parametrize(
    "problem, demographics, expected",
    [
        ("classic", False, 7),
        # The classic problem has no demographics, whatever the flag says.
        ("classic", True, 7),
        ("per_arm", False, 7),
        ("per_arm", True, 7 + 1 + 2 + 21),
    ],
)
def test_observation_dim_adds_demographics_only_to_per_arm_users(problem, demographics, expected):
    agent = "InteractionLinUCB" if problem == "per_arm" else "LinUCB"
    config = PipelineConfig().replace(
        movielens={"problem": problem, "rank_k": 7, "user_demographics": demographics},
        trainer={"agent": agent},
    )
    assert config.movielens.observation_dim == expected
    # Age, gender one-hot (F, M) and the 21 occupations.
    assert movielens_per_arm.DEMOGRAPHICS_DIM == 1 + 2 + 21


@pytest.mark.parametrize(
    "metadata, arm_dim, version",
    [(False, 7, "movielens-svd-k7"), (True, 7 + 19 + 1, "movielens-svd-k7-genres-year")],
)
def test_arm_dim_and_feature_version_follow_movie_metadata(metadata, arm_dim, version):
    config = PipelineConfig().replace(movielens={"rank_k": 7, "movie_metadata": metadata})
    assert config.movielens.arm_dim == arm_dim
    assert config.movielens.feature_version == version


@pytest.mark.parametrize("name", ["", "a b", "items.v2", "i`; DROP TABLE x; --"])
def test_items_table_is_validated_like_the_other_tables(tmp_path, name):
    message = _load_error(tmp_path, {"bigquery": {"items_table": name}})
    assert "invalid setting bigquery.items_table:" in message


def test_items_table_loads_and_defaults_to_items(tmp_path):
    assert PipelineConfig().bigquery.items_table == "items"
    config = load_config(_write(tmp_path, {"bigquery": {"items_table": "movies-v2"}}))
    assert config.bigquery.items_table == "movies-v2"


# --- the DAG ----------------------------------------------------------------------------


def _components(config: PipelineConfig, tmp_path, retraining: bool = False) -> dict:
    dag = pipeline.create_pipeline(
        config, str(tmp_path / "root"), str(tmp_path / "push"), ENDPOINTS, retraining
    )
    return {component.id: component for component in dag.components}


@pytest.fixture
def per_arm_config() -> PipelineConfig:
    return PipelineConfig().replace(
        movielens={"problem": "per_arm", "rank_k": 5, "num_candidates": 9, "movie_metadata": True},
        trainer={"agent": "DotProductEpsilonGreedy"},
        bigquery={"items_table": "movie_items"},
    ).validate()


@pytest.mark.parametrize("retraining", [False, True])
def test_per_arm_pipeline_feeds_the_items_example_gen_to_the_trainer(
    per_arm_config, tmp_path, retraining
):
    components = _components(per_arm_config, tmp_path, retraining)
    items_gen = components[ITEMS_EXAMPLE_GEN_ID]
    assert ITEMS_EXAMPLE_GEN_ID == "ItemsExampleGen"
    trainer = components["BanditTrainer"]
    assert trainer.inputs["items"].producer_component_id == ITEMS_EXAMPLE_GEN_ID
    assert trainer.inputs["examples"].producer_component_id == "BigQueryExampleGen"
    version = "movielens-svd-k5-genres-year"
    params = trainer.exec_properties
    assert (params["problem"], params["arm_dim"], params["feature_version"]) == (
        "per_arm", 5 + 20, version
    )
    assert (params["observation_dim"], params["num_actions"]) == (5, 9)
    items_query = str(items_gen.exec_properties["input_config"])
    assert "local-proj.mlbandits.movie_items" in items_query and version in items_query
    examples_query = str(components["BigQueryExampleGen"].exec_properties["input_config"])
    assert "movie_items" in examples_query and version in examples_query
    assert ("predictions" in examples_query) == retraining
    assert ("MovieLensGenerator" in components) != retraining
    if not retraining:
        # The catalogue is read only after the Generator has written it.
        assert "MovieLensGenerator" in {node.id for node in items_gen.upstream_nodes}
        assert components["MovieLensGenerator"].exec_properties["problem"] == "per_arm"


def test_items_example_gen_writes_one_items_split(per_arm_config, tmp_path):
    """The trainer reads Split-items; the default config would hash it into train and eval."""
    params = _components(per_arm_config, tmp_path)[ITEMS_EXAMPLE_GEN_ID].exec_properties
    input_config = json_format.Parse(params["input_config"], example_gen_pb2.Input())
    output_config = json_format.Parse(params["output_config"], example_gen_pb2.Output())
    assert example_gen_utils.generate_output_split_names(input_config, output_config) == [
        columns.ITEMS_SPLIT
    ]


def test_per_arm_schema_gen_gets_the_arm_and_candidate_dimensions(per_arm_config, tmp_path):
    schema_gen = _components(per_arm_config, tmp_path)["BanditSchemaGen"]
    params = schema_gen.exec_properties
    assert (params["arm_dim"], params["observation_dim"], params["num_actions"]) == (25, 5, 9)


def test_classic_pipeline_has_no_items_example_gen(tmp_path):
    components = _components(PipelineConfig(), tmp_path)
    assert ITEMS_EXAMPLE_GEN_ID not in components
    trainer = components["BanditTrainer"]
    assert trainer.inputs.get("items") is None
    assert trainer.exec_properties["problem"] == "classic"
    assert components["BanditSchemaGen"].exec_properties["arm_dim"] == 0
    assert components["BanditSchemaGen"].exec_properties["num_actions"] == 20


def test_per_arm_pipeline_is_a_tfx_pipeline(per_arm_config, tmp_path):
    dag = pipeline.create_pipeline(
        per_arm_config, str(tmp_path / "root"), str(tmp_path / "push"), ENDPOINTS
    )
    assert isinstance(dag, tfx.dsl.Pipeline)
    assert len({c.id for c in dag.components}) == len(dag.components)
