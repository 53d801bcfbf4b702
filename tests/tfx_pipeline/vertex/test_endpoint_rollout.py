"""The rollout rules on their own: endpoint state in, traffic split and undeploys out."""

import dataclasses
import json

import pytest

from custom_components.vertex_pusher.canary import judge_canary
from custom_components.vertex_pusher.endpoint_rollout import (
    NEW_MODEL,
    EndpointState,
    RolloutError,
    plan_push,
    plan_rollback,
    roles,
)
from custom_components.vertex_pusher.settings import RolloutSettings
from tfx_pipeline.config import ConfigError, load_config
from tfx_pipeline.deploy import vertex_push_config
from tfx_pipeline.vertex.config import VertexConfig


def state(*deployed: str, **traffic: int) -> EndpointState:
    return EndpointState(deployed=deployed, traffic=traffic)


def push(before: EndpointState, percent: int = 10, promoted: bool = False, new: bool = True):
    return plan_push(before, deploy_new=new, canary_percent=percent, canary_promoted=promoted)


def test_the_first_push_gets_all_traffic_even_with_a_canary_share():
    plan = push(state())
    assert (plan.traffic, plan.undeploy) == ({NEW_MODEL: 100}, ())


def test_a_full_switch_keeps_the_previous_model_at_zero_and_undeploys_the_rest():
    before = state("a", "b", "c", c=100)
    plan = push(before, percent=0)
    assert plan.traffic == {NEW_MODEL: 100}
    assert plan.undeploy == ("a", "b")
    assert "c kept at 0% for rollback" in plan.summary


def test_a_canary_push_gives_the_new_model_its_share_and_the_previous_the_rest():
    plan = push(state("a", "b", b=100))
    assert (plan.traffic, plan.undeploy) == ({NEW_MODEL: 10, "b": 90}, ("a",))


def test_a_promoted_canary_becomes_the_previous_model_of_the_next_one():
    plan = push(state("a", "b", a=90, b=10), promoted=True)
    assert (plan.traffic, plan.undeploy) == ({NEW_MODEL: 10, "b": 90}, ("a",))
    assert plan.summary.startswith("canary b promoted")


def test_a_rolled_back_canary_is_undeployed_and_the_stable_model_stays_previous():
    plan = push(state("a", "b", a=90, b=10))
    assert (plan.traffic, plan.undeploy) == ({NEW_MODEL: 10, "a": 90}, ("b",))
    assert plan.summary.startswith("canary b rolled back to a")


@pytest.mark.parametrize(
    "promoted, traffic, undeploy",
    [(True, {"b": 100}, ()), (False, {"a": 100}, ("b",))],
)
def test_without_a_new_model_the_canary_is_still_settled(promoted, traffic, undeploy):
    plan = push(state("a", "b", a=90, b=10), promoted=promoted, new=False)
    assert (plan.deploys, plan.traffic, plan.undeploy) == (False, traffic, undeploy)


def test_without_a_new_model_models_leaked_by_earlier_pushes_are_undeployed():
    plan = push(state("a", "b", "c", "d", d=100), percent=0, new=False)
    assert (plan.traffic, plan.undeploy) == ({"d": 100}, ("a", "b"))


def test_the_stable_model_is_the_larger_share_and_the_older_on_a_tie():
    assert roles(state("a", "b", a=30, b=70)).stable == "b"
    assert roles(state("a", "b", a=50, b=50)) == roles(state("a", "b", b=50, a=50))
    assert roles(state("a", "b", a=50, b=50)).stable == "a"
    assert roles(state("a", "b", "c", c=100)).standbys == ("b", "a")


def test_a_split_among_three_models_is_refused_with_how_to_fix_it():
    with pytest.raises(RolloutError, match=r"among 3 deployed models \(a: 50%, b: 30%, c: 20%\)"):
        push(state("a", "b", "c", a=50, b=30, c=20))
    with pytest.raises(RolloutError, match="Give one model 100%"):
        plan_rollback(state("a", "b", "c", a=50, b=30, c=20))


@pytest.mark.parametrize("percent", [-1, 100, 150])
def test_a_canary_share_outside_0_to_99_is_refused(percent):
    with pytest.raises(ValueError, match=rf"canary_percent {percent} must be in \[0, 99\]"):
        push(state(), percent)


def test_rollback_returns_traffic_to_the_standby_and_undeploys_the_current_model():
    plan = plan_rollback(state("a", "b", "c", c=100))
    assert (plan.traffic, plan.undeploy) == ({"b": 100}, ("c",))


def test_rollback_of_a_canary_returns_all_traffic_to_the_stable_model():
    plan = plan_rollback(state("a", "b", a=80, b=20))
    assert (plan.traffic, plan.undeploy) == ({"a": 100}, ("b",))


@pytest.mark.parametrize("before", [state(), state("a", a=100)])
def test_rollback_without_a_previous_model_says_what_to_do_instead(before):
    with pytest.raises(RolloutError, match="nothing to roll back to.*Model Registry"):
        plan_rollback(before)


def _report(baseline_value, logged=0.5, estimator="dr"):
    return {
        "rule": {"estimator": estimator},
        "logging_policy_value": logged,
        "baseline": {"estimates": {estimator: {"value": baseline_value}}},
    }


@pytest.mark.parametrize(
    "report, promoted, reason",
    [
        (_report(0.6), True, "promoted: canary DR 0.6 vs logged mean reward 0.5"),
        (_report(0.5), True, "promoted"),
        (_report(0.4), False, "rolled back: canary DR 0.4 vs logged mean reward 0.5"),
        (_report(0.7, estimator="ips"), True, "canary IPS 0.7"),
        (_report(None), False, "no finite baseline dr estimate (None)"),
        ({**_report(0.6), "baseline": None}, False, "no finite baseline"),
        (_report(0.6, logged=None), False, "logged mean reward (None)"),
        (None, False, "the run produced no evaluation"),
    ],
)
def test_the_canary_verdict_compares_its_estimate_with_the_logged_mean(report, promoted, reason):
    verdict = judge_canary(report)
    assert verdict.promoted is promoted
    assert reason in verdict.reason


@pytest.mark.parametrize("percent", [-5, 100])
def test_the_config_refuses_a_canary_share_outside_0_to_99(percent):
    vertex = VertexConfig(canary_traffic_percent=percent)
    with pytest.raises(ConfigError, match=rf"vertex.canary_traffic_percent: {percent} must be 0"):
        vertex.validate()


def test_a_canary_share_given_as_text_in_the_config_file_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"vertex": {"canary_traffic_percent": "10"}}))
    with pytest.raises(ConfigError, match="vertex.canary_traffic_percent"):
        load_config(str(path))


def test_the_pushers_settings_are_the_vertex_sections_own():
    vertex = VertexConfig(
        project="my-proj",
        region="europe-west4",
        serving_image="europe-west4-docker.pkg.dev/my-proj/mlbandits/serving:1.0",
        serving_max_replicas=3,
        canary_traffic_percent=20,
    )
    settings = vertex_push_config(vertex)
    assert dataclasses.asdict(settings) == {
        f: getattr(vertex, f) for f in dataclasses.asdict(settings)
    }
    assert settings.parent == "projects/my-proj/locations/europe-west4"
    assert settings.api_host == "europe-west4-aiplatform.googleapis.com"


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"endpoint_name": ""}, "vertex.endpoint_name: must be set"),
        ({"serving_min_replicas": 0}, "vertex.serving_min_replicas: must be >= 1"),
        ({"serving_max_replicas": 0}, "vertex.serving_max_replicas: must be >="),
        ({"canary_traffic_percent": 100}, "vertex.canary_traffic_percent: 100 must be 0"),
    ],
)
def test_the_pushers_settings_refuse_what_a_rollout_cannot_use(change, expected):
    settings = RolloutSettings(
        project="my-proj",
        region="europe-west4",
        endpoint_name="bandits",
        serving_image="europe-west4-docker.pkg.dev/my-proj/mlbandits/serving:1.0",
        serving_machine_type="n1-standard-2",
        serving_min_replicas=1,
        serving_max_replicas=1,
        service_account="",
    )
    with pytest.raises(ConfigError, match=expected):
        dataclasses.replace(settings, **change).validate()
