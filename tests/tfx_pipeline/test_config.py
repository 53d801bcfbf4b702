"""Tests for tfx_pipeline.config: defaults, JSON overrides and the error messages."""

import dataclasses
import json

import pytest

from bandit_core.data_contract import MIN_PROPENSITY, REWARD_MAX, REWARD_MIN, DataContract
from simulation.movielens_per_arm import METADATA_DIM
from tfx_pipeline import config as config_lib
from tfx_pipeline.config import ConfigError, PipelineConfig, load_config


def _write(tmp_path, content, name="config.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def _load_error(tmp_path, content) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_config(_write(tmp_path, content))
    return str(excinfo.value)


def test_defaults_validate_and_have_documented_values():
    config = PipelineConfig()
    assert config.validate() is config
    assert load_config() == config
    assert load_config("") == config
    assert config.movielens.num_actions == 20
    assert config.bigquery.table_ref == "local-proj.mlbandits.logged_interactions"
    assert config.validation.min_propensity == 1e-6


def test_load_config_overrides_nested_fields_and_keeps_the_rest(tmp_path):
    path = _write(
        tmp_path,
        {
            "pipeline_name": "my_pipe",
            "movielens": {"num_actions": 50},
            "generator": {"seed": 7},
            "validation": {"reward_max": 12},
            "bigquery": {"use_emulator": False, "table": "events"},
        },
    )
    config = load_config(path)
    defaults = PipelineConfig()
    assert config.pipeline_name == "my_pipe"
    assert config.movielens.num_actions == 50
    assert config.movielens.rank_k == defaults.movielens.rank_k
    assert config.generator.seed == 7
    assert config.generator.num_events == defaults.generator.num_events
    # An int for a float field is accepted and stored as a float.
    assert config.validation.reward_max == 12.0
    assert isinstance(config.validation.reward_max, float)
    assert config.bigquery.use_emulator is False
    assert config.bigquery.table_ref == "local-proj.mlbandits.events"
    assert config.trainer == defaults.trainer
    assert config.local == defaults.local


def test_empty_object_gives_defaults(tmp_path):
    assert load_config(_write(tmp_path, "{}")) == PipelineConfig()


@pytest.mark.parametrize(
    "content, setting",
    [
        ({"pipline_name": "x"}, "pipline_name"),
        ({"movielens": {"num_action": 3}}, "movielens.num_action"),
        ({"bigquery": {"dataset": "d", "tabel": "t"}}, "bigquery.tabel"),
    ],
)
def test_unknown_key_is_named(tmp_path, content, setting):
    message = _load_error(tmp_path, content)
    assert f"unknown setting {setting}" in message


def test_unknown_key_lists_known_settings_of_its_section(tmp_path):
    message = _load_error(tmp_path, {"generator": {"sed": 1}})
    assert "num_events" in message and "seed" in message


@pytest.mark.parametrize(
    "content, setting",
    [
        ({"movielens": {"num_actions": "20"}}, "movielens.num_actions"),
        ({"movielens": {"rank_k": True}}, "movielens.rank_k"),
        ({"movielens": {"rank_k": 2.0}}, "movielens.rank_k"),
        ({"generator": {"seed": {"value": 1}}}, "generator.seed"),
        ({"generator": {"num_events": [1]}}, "generator.num_events"),
        ({"validation": {"reward_min": "low"}}, "validation.reward_min"),
        ({"validation": {"min_propensity": False}}, "validation.min_propensity"),
        ({"bigquery": {"use_emulator": 1}}, "bigquery.use_emulator"),
        ({"bigquery": {"project": 5}}, "bigquery.project"),
        ({"bigquery": {"project": None}}, "bigquery.project"),
        ({"pipeline_name": ["a"]}, "pipeline_name"),
        ({"trainer": "LinUCB"}, "trainer"),
        ({"trainer": None}, "trainer"),
    ],
)
def test_wrong_type_names_the_setting(tmp_path, content, setting):
    message = _load_error(tmp_path, content)
    assert f"invalid setting {setting}:" in message


@pytest.mark.parametrize(
    "content, setting",
    [
        ({"movielens": {"num_actions": 0}}, "movielens.num_actions"),
        ({"movielens": {"num_actions": 1683}}, "movielens.num_actions"),
        ({"movielens": {"rank_k": 0}}, "movielens.rank_k"),
        ({"generator": {"num_events": 0}}, "generator.num_events"),
        ({"generator": {"seed": -1}}, "generator.seed"),
        ({"ingestion": {"train_buckets": 0}}, "ingestion.train_buckets"),
        ({"ingestion": {"eval_buckets": 0}}, "ingestion.eval_buckets"),
        ({"ingestion": {"max_quarantined_share": -0.01}}, "ingestion.max_quarantined_share"),
        ({"ingestion": {"max_quarantined_share": 1.5}}, "ingestion.max_quarantined_share"),
        ({"bigquery": {"quarantine_table": "q;x"}}, "bigquery.quarantine_table"),
        ({"bigquery": {"quarantine_table": "rewards"}}, "bigquery.quarantine_table"),
        ({"validation": {"min_propensity": 0}}, "validation.min_propensity"),
        ({"validation": {"min_propensity": 1.5}}, "validation.min_propensity"),
        ({"validation": {"min_propensity": -0.1}}, "validation.min_propensity"),
        ({"validation": {"reward_min": 3, "reward_max": 3}}, "validation.reward_min/reward_max"),
        ({"validation": {"reward_min": 4, "reward_max": 3}}, "validation.reward_min/reward_max"),
        ({"trainer": {"agent": "DQN"}}, "trainer.agent"),
        ({"trainer": {"alpha": -0.5}}, "trainer.alpha"),
        ({"trainer": {"tikhonov_weight": 0}}, "trainer.tikhonov_weight"),
        ({"trainer": {"epsilon": 1.5}}, "trainer.epsilon"),
        ({"trainer": {"hidden_layers": "64,,32"}}, "trainer.hidden_layers"),
        ({"trainer": {"hidden_layers": "²"}}, "trainer.hidden_layers"),
        ({"trainer": {"encoding_dim": 0}}, "trainer.encoding_dim"),
        ({"trainer": {"learning_rate": 0}}, "trainer.learning_rate"),
        ({"trainer": {"batch_size": 0}}, "trainer.batch_size"),
        ({"trainer": {"epochs": 0}}, "trainer.epochs"),
        ({"trainer": {"seed": -1}}, "trainer.seed"),
        ({"evaluator": {"blessing_estimator": "mean"}}, "evaluator.blessing_estimator"),
        ({"evaluator": {"blessing_comparison": "upper"}}, "evaluator.blessing_comparison"),
        ({"evaluator": {"min_improvement": -0.1}}, "evaluator.min_improvement"),
        ({"evaluator": {"bootstrap_samples": 0}}, "evaluator.bootstrap_samples"),
        ({"evaluator": {"confidence": 1}}, "evaluator.confidence"),
        ({"evaluator": {"seed": -1}}, "evaluator.seed"),
        ({"evaluator": {"reward_model_folds": 1}}, "evaluator.reward_model_folds"),
        ({"evaluator": {"ridge": 0}}, "evaluator.ridge"),
        ({"evaluator": {"policy_samples": 0}}, "evaluator.policy_samples"),
        ({"bigquery": {"scratch_dataset": "mlbandits"}}, "bigquery.scratch_dataset"),
        (
            {"bigquery": {"dataset": "shared", "scratch_dataset": "shared"}},
            "bigquery.scratch_dataset",
        ),
        ({"bigquery": {"project": "my.proj"}}, "bigquery.project"),
        ({"bigquery": {"dataset": ""}}, "bigquery.dataset"),
        ({"bigquery": {"table": "a b"}}, "bigquery.table"),
        ({"bigquery": {"table": "t`; DROP TABLE x; --"}}, "bigquery.table"),
        ({"bigquery": {"predictions_table": "p.q"}}, "bigquery.predictions_table"),
        ({"bigquery": {"rewards_table": "r/s"}}, "bigquery.rewards_table"),
        ({"pipeline_name": ""}, "pipeline_name"),
        ({"pipeline_name": "my pipe"}, "pipeline_name"),
        ({"serving": {"port": 65536}}, "serving.port"),
        ({"serving": {"port": -1}}, "serving.port"),
        ({"serving": {"exploration": "ucb"}}, "serving.exploration"),
        ({"serving": {"epsilon": 1.01}}, "serving.epsilon"),
        ({"serving": {"epsilon": -0.01}}, "serving.epsilon"),
        ({"serving": {"temperature": 0}}, "serving.temperature"),
        ({"serving": {"max_instances": 0}}, "serving.max_instances"),
        ({"loop": {"rounds": 0}}, "loop.rounds"),
        ({"loop": {"initial_events": 0}}, "loop.initial_events"),
        ({"loop": {"requests_per_round": 0}}, "loop.requests_per_round"),
        ({"loop": {"concurrency": 0}}, "loop.concurrency"),
        ({"loop": {"min_new_events": -1}}, "loop.min_new_events"),
        ({"loop": {"interval_s": -1}}, "loop.interval_s"),
        ({"loop": {"min_new_events": 0, "interval_s": 0}}, "loop.min_new_events/interval_s"),
        ({"loop": {"reload_timeout_s": 0}}, "loop.reload_timeout_s"),
    ],
)
def test_out_of_range_value_names_the_setting(tmp_path, content, setting):
    message = _load_error(tmp_path, content)
    assert f"invalid setting {setting}:" in message


def test_trainer_messages_name_the_setting_and_the_choices(tmp_path):
    assert _load_error(tmp_path, {"trainer": {"agent": "DQN"}}) == (
        "invalid setting trainer.agent: 'DQN' is not supported; choose one of LinUCB, LinTS, "
        "NeuralEpsilonGreedy, NeuralLinUCB (classic problem) or PerArmLinUCB, PerArmLinTS, "
        "InteractionLinUCB, InteractionLinTS, PerArmNeuralEpsilonGreedy, PerArmNeuralLinUCB, "
        "DotProductEpsilonGreedy (per-arm problem)"
    )
    assert _load_error(tmp_path, {"trainer": {"hidden_layers": "²"}}) == (
        'invalid setting trainer.hidden_layers: must be comma-separated positive integers, '
        'e.g. "64,64"'
    )
    assert "trainer.hidden_layers: [64, 64] is not of type str" in _load_error(
        tmp_path, {"trainer": {"hidden_layers": [64, 64]}}
    )


def test_trainer_and_evaluator_sections_load_from_json(tmp_path):
    config = load_config(
        _write(
            tmp_path,
            {
                "trainer": {"agent": "NeuralLinUCB", "hidden_layers": "32, 16", "epochs": 3},
                "evaluator": {"blessing_comparison": "point_estimate", "use_simulator": False},
            },
        )
    )
    assert config.trainer.layer_sizes == (32, 16)
    assert config.trainer.hidden_layers == "32, 16"
    assert config.trainer.epochs == 3
    assert config.evaluator.blessing_rule.comparison == "point_estimate"
    assert config.evaluator.use_simulator is False
    assert "invalid setting evaluator.use_simulator" in _load_error(
        tmp_path, {"evaluator": {"use_simulator": 1}}
    )


def test_non_finite_floats_from_json_are_rejected(tmp_path):
    # Python's json module accepts the NaN / Infinity literals.
    assert "validation.reward_min/reward_max" in _load_error(
        tmp_path, '{"validation": {"reward_max": Infinity}}'
    )
    assert "validation.reward_min/reward_max" in _load_error(
        tmp_path, '{"validation": {"reward_min": NaN}}'
    )
    assert "validation.min_propensity" in _load_error(
        tmp_path, '{"validation": {"min_propensity": NaN}}'
    )


def test_boundary_values_are_accepted(tmp_path):
    config = load_config(
        _write(
            tmp_path,
            {
                "movielens": {"num_actions": 1682, "rank_k": 1},
                "generator": {"num_events": 1, "seed": 0},
                "serving": {"port": 65535, "epsilon": 0, "exploration": "boltzmann"},
                "loop": {"min_new_events": 0, "interval_s": 0.5},
                "trainer": {"alpha": 0},
            },
        )
    )
    assert config.movielens.num_actions == 1682
    assert config.serving.epsilon == 0.0
    assert config.loop.interval_s == 0.5


def test_serving_and_loop_sections_keep_their_keys_and_defaults():
    config = PipelineConfig()
    serving = {
        "host": "127.0.0.1", "port": 0, "exploration": "epsilon_greedy", "epsilon": 0.1,
        "temperature": 1.0, "max_instances": 1000,
    }
    loop = {
        "rounds": 4, "initial_events": 20_000, "requests_per_round": 1000, "concurrency": 8,
        "min_new_events": 500, "interval_s": 0.0, "reload_timeout_s": 120.0,
    }
    assert serving.items() <= dataclasses.asdict(config.serving).items()
    assert loop.items() <= dataclasses.asdict(config.loop).items()


@pytest.mark.parametrize(
    "content, message",
    [
        (
            {"loop": {"requests_per_round": 0}},
            "invalid setting loop.requests_per_round: must be >= 1",
        ),
        (
            {"loop": {"min_new_events": 0}},
            "invalid setting loop.min_new_events/interval_s: "
            "at least one must be > 0 or retraining never triggers",
        ),
        ({"serving": {"epsilon": 2}}, "invalid setting serving.epsilon: must be in [0, 1]"),
        ('{"serving": {"temperature": Infinity}}', "invalid setting serving.temperature: "),
    ],
)
def test_serving_and_loop_messages_name_the_section(tmp_path, content, message):
    assert _load_error(tmp_path, content).startswith(message)


@pytest.mark.parametrize("value", [1e-9, 0.5, 1.0])
def test_min_propensity_accepts_the_half_open_interval(tmp_path, value):
    config = load_config(_write(tmp_path, {"validation": {"min_propensity": value}}))
    assert config.validation.min_propensity == value


@pytest.mark.parametrize("dataset", ["my-dataset", "scratch-dataset"])
def test_hyphen_in_dataset_names_is_rejected(tmp_path, dataset):
    field = "dataset" if dataset == "my-dataset" else "scratch_dataset"
    message = _load_error(tmp_path, {"bigquery": {field: dataset}})
    assert f"bigquery.{field}" in message


def test_malformed_json_reports_line_and_column(tmp_path):
    text = '{\n  "movielens": {"rank_k": 3,}\n}\n'
    with pytest.raises(json.JSONDecodeError) as json_error:
        json.loads(text)
    message = _load_error(tmp_path, text)
    assert "not valid JSON" in message
    assert f"line {json_error.value.lineno}, column {json_error.value.colno}" in message
    assert json_error.value.lineno == 2


def test_top_level_must_be_an_object(tmp_path):
    assert "JSON object" in _load_error(tmp_path, "[1, 2]")


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match="does not exist") as excinfo:
        load_config(str(missing))
    assert str(missing) in str(excinfo.value)


def test_directory_instead_of_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        load_config(str(tmp_path))


def test_replace_overrides_some_fields_and_keeps_the_others(tmp_path):
    base = load_config(
        _write(tmp_path, {"movielens": {"rank_k": 5}, "generator": {"num_events": 10}})
    )
    replaced = base.replace(movielens={"num_actions": 7}, local={"root": "/tmp/x"})
    assert replaced.movielens.num_actions == 7
    assert replaced.movielens.rank_k == 5
    assert replaced.movielens.data_dir == base.movielens.data_dir
    assert replaced.generator.num_events == 10
    assert replaced.local.root == "/tmp/x"
    assert str(replaced.local.metadata_path) == "/tmp/x/metadata.sqlite"
    for name in (
        "bigquery", "ingestion", "validation", "trainer", "serving", "loop", "pipeline_name"
    ):
        assert getattr(replaced, name) == getattr(base, name)
    # The original is untouched (frozen dataclasses).
    assert base.movielens.num_actions == 20
    assert dataclasses.is_dataclass(replaced.movielens)


def test_replace_checks_keys_and_types():
    with pytest.raises(ConfigError, match="unknown setting movielens.rank"):
        PipelineConfig().replace(movielens={"rank": 3})
    with pytest.raises(ConfigError, match="invalid setting generator.seed"):
        PipelineConfig().replace(generator={"seed": "3"})


def test_replace_then_validate_rejects_out_of_range():
    with pytest.raises(ConfigError, match="invalid setting generator.num_events"):
        PipelineConfig().replace(generator={"num_events": 0}).validate()


def test_config_error_is_a_value_error():
    assert issubclass(config_lib.ConfigError, ValueError)


def test_max_quarantined_share_defaults_to_one_percent_and_names_itself_when_bad(tmp_path):
    assert PipelineConfig().validate().ingestion.max_quarantined_share == 0.01
    for share in (0, 0.5, 1):
        config = load_config(_write(tmp_path, {"ingestion": {"max_quarantined_share": share}}))
        assert config.ingestion.max_quarantined_share == share
    message = _load_error(tmp_path, '{"ingestion": {"max_quarantined_share": NaN}}')
    assert "ingestion.max_quarantined_share" in message and "[0, 1]" in message


def test_the_data_contract_is_the_configured_problem_with_the_validation_bounds():
    classic = PipelineConfig().replace(validation={"reward_max": 12}).validate().data_contract
    assert classic == DataContract(observation_dim=20, num_actions=20, reward_max=12.0)
    per_arm = (
        PipelineConfig()
        .replace(
            movielens={"problem": "per_arm", "num_candidates": 30, "movie_metadata": True},
            trainer={"agent": "InteractionLinUCB"},
        )
        .validate()
        .data_contract
    )
    assert (per_arm.observation_dim, per_arm.num_actions, per_arm.arm_dim) == (
        20, 30, 20 + METADATA_DIM
    )
    defaults = PipelineConfig().validation
    assert (defaults.reward_min, defaults.reward_max, defaults.min_propensity) == (
        REWARD_MIN,
        REWARD_MAX,
        MIN_PROPENSITY,
    )
