"""The serving settings: one check for the config section and the container's environment."""

import dataclasses

import pytest

from bandit_core.errors import ConfigError
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
