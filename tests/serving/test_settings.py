"""The serving settings: one check for the config section and the container's environment."""

import dataclasses

import pytest

from bandit_core.errors import ConfigError
from serving.__main__ import SettingsError, settings_from_env
from serving.settings import ENVIRONMENT, ServingSettings


def test_defaults_validate_and_take_any_free_port():
    settings = ServingSettings()
    assert settings.validate() is settings
    assert settings.port == 0
    assert (settings.exploration, settings.epsilon) == ("epsilon_greedy", 0.1)


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        (dict(port=-1), "serving.port"),
        (dict(port=65536), "serving.port"),
        (dict(exploration="thompson"), "serving.exploration"),
        (dict(epsilon=-0.1), "serving.epsilon"),
        (dict(epsilon=1.5), "serving.epsilon"),
        (dict(epsilon=float("nan")), "serving.epsilon"),
        (dict(exploration="boltzmann", temperature=0.0), "serving.temperature"),
        (dict(exploration="boltzmann", temperature=float("inf")), "serving.temperature"),
        (dict(max_instances=0), "serving.max_instances"),
        (dict(predict_route="predict"), "serving.predict_route"),
        (
            dict(health_route="/same", reward_route="/same"),
            "serving.health_route/predict_route/reward_route",
        ),
        (dict(max_body_bytes=0), "serving.max_body_bytes"),
    ],
)
def test_validation_names_the_setting(kwargs, setting):
    with pytest.raises(ConfigError, match=f"^invalid setting {setting}: "):
        ServingSettings(**kwargs).validate()


def test_every_setting_has_one_environment_variable():
    assert list(ENVIRONMENT) == [field.name for field in dataclasses.fields(ServingSettings)]
    assert len(set(ENVIRONMENT.values())) == len(ENVIRONMENT)


def test_environment_round_trips():
    settings = ServingSettings(
        host="0.0.0.0",
        port=9000,
        exploration="boltzmann",
        epsilon=0.25,
        temperature=0.3,
        max_instances=7,
        predict_route="/v1/predict",
        max_body_bytes=1024,
    )
    assert ServingSettings.from_environment(settings.environment()) == settings


def test_unset_variables_take_the_given_defaults_then_the_field_defaults():
    settings = ServingSettings.from_environment({"MLBANDITS_EPSILON": ""}, port=8080)
    assert (settings.port, settings.epsilon) == (8080, 0.1)
    assert ServingSettings.from_environment({"AIP_HTTP_PORT": "9000"}, port=8080).port == 9000


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MLBANDITS_EPSILON": "2"}, "invalid setting MLBANDITS_EPSILON: must be in [0, 1]"),
        ({"MLBANDITS_MAX_INSTANCES": "many"}, "MLBANDITS_MAX_INSTANCES: expected int, got 'many'"),
        ({"AIP_PREDICT_ROUTE": "predict"}, "invalid setting AIP_PREDICT_ROUTE: 'predict'"),
        (
            {"AIP_HEALTH_ROUTE": "/x", "AIP_PREDICT_ROUTE": "/x"},
            "AIP_HEALTH_ROUTE/AIP_PREDICT_ROUTE/MLBANDITS_REWARD_ROUTE: must differ",
        ),
    ],
)
def test_environment_errors_name_the_variable(env, message):
    with pytest.raises(ConfigError) as error:
        ServingSettings.from_environment(env)
    assert message in str(error.value)


def test_settings_come_from_vertex_and_mlbandits_variables():
    settings = settings_from_env(
        {
            "AIP_STORAGE_URI": "gs://bucket/serving_model",
            "AIP_HTTP_PORT": "9000",
            "AIP_PREDICT_ROUTE": "/v1/predict",
            "MLBANDITS_HOST": "0.0.0.0",
            "MLBANDITS_EXPLORATION": "boltzmann",
            "MLBANDITS_TEMPERATURE": "0.5",
            "MLBANDITS_BQ_REST_ENDPOINT": "http://127.0.0.1:9050",
            "MLBANDITS_SHIP_LOGS": "false",
        }
    )
    assert settings.serving == ServingSettings(
        host="0.0.0.0",
        port=9000,
        exploration="boltzmann",
        temperature=0.5,
        predict_route="/v1/predict",
    )
    assert settings.endpoints.rest_endpoint == "http://127.0.0.1:9050" and not settings.ship_logs
    assert (settings.dataset, settings.predictions_table) == ("mlbandits", "predictions")


def test_the_container_listens_on_vertex_ais_port_by_default():
    assert settings_from_env({"AIP_STORAGE_URI": "/models"}).serving.port == 8080


def test_vertex_deployed_model_id_is_read_and_absent_outside_vertex():
    on_vertex = settings_from_env({"AIP_STORAGE_URI": "/m", "AIP_DEPLOYED_MODEL_ID": "4781"})
    assert on_vertex.deployed_model_id == "4781"
    assert settings_from_env({"AIP_STORAGE_URI": "/m"}).deployed_model_id is None


@pytest.mark.parametrize(
    "env, variable",
    [
        ({}, "AIP_STORAGE_URI"),
        ({"AIP_HTTP_PORT": "http"}, "AIP_HTTP_PORT"),
        ({"MLBANDITS_EPSILON": "2"}, "MLBANDITS_EPSILON"),
        ({"MLBANDITS_SHIP_LOGS": "maybe"}, "MLBANDITS_SHIP_LOGS"),
        ({"MLBANDITS_SCORER": "gpu"}, "MLBANDITS_SCORER"),
        ({"MLBANDITS_SPOOL_MAX_MB": "0"}, "MLBANDITS_SPOOL_MAX_MB: must be > 0"),
        ({"MLBANDITS_SPOOL_MAX_MB": "lots"}, "MLBANDITS_SPOOL_MAX_MB: expected float"),
        ({"MLBANDITS_SHIP_SETTLE_S": "-1"}, "MLBANDITS_SHIP_SETTLE_S: must be >= 0"),
        ({"MLBANDITS_REWARD_WINDOW_S": "0"}, "MLBANDITS_REWARD_WINDOW_S: must be > 0"),
        ({"MLBANDITS_REWARD_WINDOW_S": "nan"}, "MLBANDITS_REWARD_WINDOW_S: must be > 0"),
        ({"MLBANDITS_REWARD_WINDOW_S": "a week"}, "MLBANDITS_REWARD_WINDOW_S: expected float"),
        ({"AIP_DEPLOYED_MODEL_ID": "model-7"}, "AIP_DEPLOYED_MODEL_ID: Vertex AI sets it"),
        ({"AIP_DEPLOYED_MODEL_ID": "²"}, "AIP_DEPLOYED_MODEL_ID: Vertex AI sets it"),
        (
            {"MLBANDITS_SCORER": "savedmodel", "MLBANDITS_EXPLORATION": "boltzmann"},
            "MLBANDITS_EXPLORATION",
        ),
    ],
)
def test_bad_settings_name_the_variable(env, variable):
    if variable != "AIP_STORAGE_URI":
        env = {"AIP_STORAGE_URI": "/models", **env}
    with pytest.raises(SettingsError, match=variable):
        settings_from_env(env)


@pytest.mark.parametrize(
    "variable, value, rule",
    [
        ("MLBANDITS_BQ_PROJECT", "p", "6 to 30 lowercase letters"),
        ("MLBANDITS_BQ_PROJECT", "Local-Proj", "6 to 30 lowercase letters"),
        ("MLBANDITS_BQ_PROJECT", "local-proj`; DROP", "6 to 30 lowercase letters"),
        ("MLBANDITS_BQ_PROJECT", "1local-proj", "starting with a letter"),
        ("MLBANDITS_BQ_DATASET", "logs-2024", "ASCII letters, digits or underscores"),
        ("MLBANDITS_BQ_DATASET", "", "1 to 1024"),
        ("MLBANDITS_BQ_DATASET", "lögs", "ASCII letters"),
        ("MLBANDITS_BQ_PREDICTIONS_TABLE", "predictions` WHERE 1=1 --", "'`' is not allowed"),
        ("MLBANDITS_BQ_PREDICTIONS_TABLE", "other.predictions", "'.' is not allowed"),
        ("MLBANDITS_BQ_REWARDS_TABLE", "", "1 to 1024 bytes"),
        ("MLBANDITS_BQ_REWARDS_TABLE", "r" * 1025, "1 to 1024 bytes"),
    ],
)
def test_bigquery_names_follow_bigquerys_rules_and_errors_name_the_variable(variable, value, rule):
    with pytest.raises(SettingsError) as error:
        settings_from_env({"AIP_STORAGE_URI": "/models", variable: value})
    assert str(error.value).startswith(f"{variable}: {value!r} is no ")
    assert rule in str(error.value)


@pytest.mark.parametrize(
    "variable, value",
    [
        ("MLBANDITS_BQ_PROJECT", "my-project-123"),
        ("MLBANDITS_BQ_PROJECT", "example.com:my-project"),
        ("MLBANDITS_BQ_DATASET", "Logs_2024"),
        ("MLBANDITS_BQ_PREDICTIONS_TABLE", "served-predictions 2024"),
        ("MLBANDITS_BQ_REWARDS_TABLE", "Belohnungen_über"),
    ],
)
def test_bigquery_names_that_bigquery_accepts_are_accepted(variable, value):
    settings = settings_from_env({"AIP_STORAGE_URI": "/models", variable: value})
    names = (
        settings.endpoints.project,
        settings.dataset,
        settings.predictions_table,
        settings.rewards_table,
    )
    assert value in names


def test_spool_and_shipping_settings_come_from_their_variables():
    settings = settings_from_env(
        {
            "AIP_STORAGE_URI": "/models",
            "MLBANDITS_SPOOL_MAX_MB": "2.5",
            "MLBANDITS_SHIP_SETTLE_S": "0",
            "MLBANDITS_REWARD_WINDOW_S": "3600",
        }
    )
    assert (settings.spool_max_mb, settings.ship_settle_s, settings.reward_window_s) == (
        2.5,
        0.0,
        3600.0,
    )
    defaults = settings_from_env({"AIP_STORAGE_URI": "/models"})
    assert (defaults.spool_max_mb, defaults.ship_settle_s, defaults.reward_window_s) == (
        1024.0,
        5.0,
        7 * 24 * 3600.0,
    )
