"""PolicyEvaluator: the blessing rule, the executor on real artifacts, and a real DAG.

The DAG test runs ImportExampleGen -> StatisticsGen/BanditSchemaGen/ExampleValidator
-> BanditTrainer -> PolicyEvaluator (baseline from the latest-blessed resolver)
-> stock Pusher twice under LocalDagRunner: a good policy is blessed and pushed,
then a worse one is evaluated against it, refused and not pushed; ML Metadata
then leads TensorBoard to both runs' trainer and evaluator summaries.
"""

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.orchestration import metadata
from tfx.types import standard_artifacts
from tfx.utils import path_utils, proto_utils

from bandit_core.errors import ConfigError
from bandit_core.policy_evaluation_file import EVALUATION_FILE
from custom_components.bandit_schema_gen.component import BanditSchemaGen
from custom_components.bandit_trainer.component import BanditTrainer
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.policy_evaluator import blessing, evaluation_summaries, executor
from custom_components.policy_evaluator.component import (
    PolicyEvaluator,
    latest_blessed_model_resolver,
)
from custom_components.policy_evaluator.ope import Estimate
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.policy_evaluator.target_policy import SavedPolicy, saved_model_probabilities
from simulation.movielens_data import default_data_dir
from tests.custom_components.policy_evaluator.linear_logs import (
    D,
    K,
    examples_artifact,
    log_rows,
    write_examples,
)
from tests.helpers.summary_events import read_scalars
from tfx_pipeline.reports.tensorboard_logs import tensorboard_logdir_spec

# --- the rule -------------------------------------------------------------------------------


def _rule(**change) -> blessing.BlessingRule:
    return EvaluatorSettings(**change).validate().blessing_rule


def _estimates(dr, lower=None, upper=None):
    lower = dr - 0.1 if lower is None else lower
    upper = dr + 0.1 if upper is None else upper
    return {name: Estimate(dr, lower, upper) for name in ("ips", "snips", "dm", "dr")}


@pytest.mark.parametrize(
    "rule, candidate, baseline, logging, blessed",
    [
        (_rule(), _estimates(4.0, lower=3.9), _estimates(3.8), 1.0, True),
        (_rule(), _estimates(4.0, lower=3.7), _estimates(3.8), 1.0, False),
        (_rule(), _estimates(4.0, lower=3.8), _estimates(3.8), 1.0, False),
        (_rule(), _estimates(4.0, lower=3.7), None, 3.6, True),
        (_rule(), _estimates(4.0, lower=3.7), None, 3.8, False),
        (
            _rule(blessing_comparison="point_estimate"),
            _estimates(4.0, lower=3.0), _estimates(3.8), 1.0, True,
        ),
        (
            _rule(blessing_comparison="point_estimate", min_improvement=0.3),
            _estimates(4.0), _estimates(3.8), 1.0, False,
        ),
        (_rule(), _estimates(4.0, lower=math.nan), None, 1.0, False),
        (_rule(), _estimates(4.0), _estimates(math.nan), 1.0, False),
    ],
)
def test_blessing_rule(rule, candidate, baseline, logging, blessed):
    decision = blessing.decide(rule, candidate, baseline, logging)
    assert decision.blessed is blessed
    assert decision.reason.startswith("blessed" if blessed else "not blessed")


def test_blessing_reason_names_both_sides():
    decision = blessing.decide(_rule(), _estimates(4.0, 3.9), _estimates(3.5), 1.0)
    assert decision.reason == (
        "blessed: candidate DR lower bound 3.9 vs baseline DR 3.5 + min_improvement 0"
    )
    first = blessing.decide(_rule(blessing_estimator="ips"), _estimates(2.0, 0.5), None, 1.0)
    assert "candidate IPS lower bound 0.5 vs logging policy's mean reward 1" in first.reason


@pytest.mark.parametrize(
    "change, message",
    [
        ({"blessing_estimator": "mean"}, "blessing_estimator: must be one of ips, snips, dm, dr"),
        (
            {"blessing_comparison": "upper"},
            "blessing_comparison: must be lower_bound or point_estimate",
        ),
        ({"min_improvement": -1.0}, "min_improvement: must be finite and >= 0"),
        ({"min_improvement": math.inf}, "min_improvement: must be finite and >= 0"),
        ({"bootstrap_samples": 0}, "bootstrap_samples: must be >= 1"),
        ({"confidence": 1.0}, "confidence: must be in (0, 1)"),
        ({"seed": -1}, "seed: must be >= 0"),
        ({"reward_model_folds": 1}, "reward_model_folds: must be >= 2"),
        ({"ridge": 0.0}, "ridge: must be > 0"),
        ({"policy_samples": 0}, "policy_samples: must be >= 1"),
    ],
)
def test_bad_evaluator_settings_are_rejected(change, message):
    with pytest.raises(ConfigError) as raised:
        EvaluatorSettings(**change).validate()
    assert str(raised.value) == f"invalid setting evaluator.{message}"


# --- the executor on artifacts made here -------------------------------------------------------

PROPERTIES = dict(
    split="eval",
    **dataclasses.asdict(EvaluatorSettings(bootstrap_samples=300, policy_samples=32)),
    reward_min=-20.0,
    reward_max=20.0,
)


def _run(examples, model, baseline, tmp_path, **overrides):
    blessing_artifact = standard_artifacts.ModelBlessing()
    blessing_artifact.uri = str(tmp_path / "blessing")
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(tmp_path / "evaluation")
    os.makedirs(blessing_artifact.uri)
    os.makedirs(evaluation.uri)
    executor.Executor().Do(
        {
            "examples": [examples],
            "model": [model],
            "baseline_model": [baseline] if baseline else [],
        },
        {"blessing": [blessing_artifact], "evaluation": [evaluation]},
        {**PROPERTIES, **overrides},
    )
    with open(os.path.join(evaluation.uri, EVALUATION_FILE)) as f:
        report = json.load(f)
    return blessing_artifact, evaluation, report


def test_good_candidate_without_baseline_is_blessed(models, eval_rows, tmp_path):
    examples = examples_artifact(tmp_path / "examples", eval_rows)
    blessed, evaluation, report = _run(examples, models["good"], None, tmp_path)

    assert blessed.get_int_custom_property("blessed") == 1
    assert os.listdir(blessed.uri) == ["BLESSED"]
    assert blessed.get_int_custom_property("current_model_id") == 11
    assert blessed.get_string_custom_property("current_model") == models["good"].uri
    assert "logging policy's mean reward" in blessed.get_string_custom_property("blessing_message")
    assert report["blessed"] is True and report["baseline"] is None
    assert report["eval_rows"] == 3000
    assert report["logging_policy_value"] == pytest.approx(float(eval_rows[2].mean()), rel=1e-6)
    estimates = report["candidate"]["estimates"]
    assert set(estimates) == {"ips", "snips", "dm", "dr"}
    for estimate in estimates.values():
        assert estimate["lower"] <= estimate["value"] <= estimate["upper"]
    assert report["candidate"]["agent"] == "LinUCB"
    assert report["simulator"] == {"unavailable": "no movielens_dir configured"}
    assert evaluation.get_float_custom_property("candidate_dr") == estimates["dr"]["value"]
    assert evaluation.get_float_custom_property("candidate_dr_lower") == estimates["dr"]["lower"]
    assert evaluation.get_int_custom_property("blessed") == 1


def test_the_estimates_and_intervals_are_tensorboard_scalars_in_the_evaluation(
    models, eval_rows, tmp_path
):
    examples = examples_artifact(tmp_path / "examples", eval_rows)
    _, evaluation, report = _run(examples, models["good"], models["bad"], tmp_path)

    scalars = read_scalars(os.path.join(evaluation.uri, evaluation_summaries.SUMMARY_DIR))
    expected = {"blessing/blessed": 1.0, "logging_policy/value": report["logging_policy_value"]}
    for role in ("candidate", "baseline"):
        for name, estimate in report[role]["estimates"].items():
            expected[f"{role}/{name}"] = estimate["value"]
            expected[f"{role}/{name}_lower"] = estimate["lower"]
            expected[f"{role}/{name}_upper"] = estimate["upper"]
    assert set(scalars) == set(expected)
    for tag, value in expected.items():
        # TensorBoard keeps scalars as float32.
        assert scalars[tag] == [(0, pytest.approx(value, rel=1e-6))], tag
    assert scalars["candidate/dr"][0][1] == pytest.approx(
        evaluation.get_float_custom_property("candidate_dr"), rel=1e-6
    )


def test_an_undefined_estimate_is_left_out_of_the_scalars():
    report = {
        "blessed": False,
        "logging_policy_value": None,
        "candidate": {
            "estimates": {"snips": {"value": None, "lower": None, "upper": None}},
            "true_value": 2.5,
        },
        "baseline": None,
        "simulator": {"oracle_value": 4.0, "unavailable": "no"},
    }
    assert dict(evaluation_summaries.evaluation_scalars(report)) == {
        "blessing/blessed": 0.0,
        "candidate/true_value": 2.5,
        "simulator/oracle_value": 4.0,
    }


def test_use_simulator_false_skips_the_simulator_even_with_a_movielens_dir(
    models, eval_rows, tmp_path
):
    examples = examples_artifact(tmp_path / "examples", eval_rows)
    _, _, report = _run(
        examples, models["good"], None, tmp_path, movielens_dir="", use_simulator=False
    )
    assert report["simulator"] == {"unavailable": "no movielens_dir configured"}
    assert report["candidate"]["true_value"] is None
    assert report["settings"]["use_simulator"] is False


def test_good_candidate_beats_a_worse_baseline_and_a_worse_one_is_refused(
    models, eval_rows, tmp_path
):
    examples = examples_artifact(tmp_path / "examples", eval_rows)
    up, _, up_report = _run(examples, models["good"], models["bad"], tmp_path / "up")
    down, _, down_report = _run(examples, models["bad"], models["good"], tmp_path / "down")

    assert up.get_int_custom_property("blessed") == 1
    assert up.get_int_custom_property("baseline_model_id") == 12
    assert up_report["baseline"]["agent"] == "LinTS"
    assert down.get_int_custom_property("blessed") == 0
    assert os.listdir(down.uri) == ["NOT_BLESSED"]
    assert down.get_string_custom_property("blessing_message").startswith(
        "not blessed: candidate DR lower bound"
    )
    good = up_report["candidate"]["estimates"]["dr"]["value"]
    bad = down_report["candidate"]["estimates"]["dr"]["value"]
    assert good > bad + 1.0


def test_an_unblessed_candidate_is_not_pushed_by_the_stock_pusher(models, eval_rows, tmp_path):
    examples = examples_artifact(tmp_path / "examples", eval_rows)
    pushed_dirs = {}
    for name, baseline in (("bad", models["good"]), ("good", models["bad"])):
        blessing_artifact, _, _ = _run(examples, models[name], baseline, tmp_path / name)
        pushed = standard_artifacts.PushedModel()
        pushed.uri = str(tmp_path / name / "pushed")
        os.makedirs(pushed.uri)
        destination = str(tmp_path / name / "serving")
        pusher_executor.Executor().Do(
            {"model": [models[name]], "model_blessing": [blessing_artifact]},
            {"pushed_model": [pushed]},
            {
                "push_destination": proto_utils.proto_to_json(
                    tfx.proto.PushDestination(
                        filesystem=tfx.proto.PushDestination.Filesystem(base_directory=destination)
                    )
                )
            },
        )
        pushed_dirs[name] = (pushed.get_int_custom_property("pushed"), os.path.exists(destination))
    assert pushed_dirs == {"bad": (0, False), "good": (1, True)}


POSITIVE = (
    "propensities <= 0: the logging policy must give every logged action a positive "
    "probability, or importance weights are infinite"
)


@pytest.mark.parametrize(
    "column, value, expected",
    [
        ("propensity", 0.0, f"{POSITIVE} (observed 0)"),
        ("propensity", 1.5, "propensities > 1, which is not a probability (observed 1.5)"),
        ("propensity", None, "propensities missing (NaN)"),
        ("reward", 50.0, "rewards outside [-20.0, 20.0] (observed 50)"),
        ("reward", float("nan"), "rewards missing or not finite"),
        ("reward", None, "rewards missing or not finite"),
        ("action", None, "actions missing or outside [0, 4) (observed -1)"),
        ("action", 9, "actions missing or outside [0, 4) (observed 9)"),
    ],
)
def test_bad_evaluation_data_is_refused_with_the_reason(
    models, eval_rows, tmp_path, column, value, expected
):
    """The reason counts the bad rows and shows the values out of range (no row index: the
    rows are validated batch by batch, wherever Beam reads them)."""
    x, a, r, p = (list(c) for c in eval_rows)
    {"action": a, "reward": r, "propensity": p}[column][17] = value
    examples = examples_artifact(tmp_path / "examples", (x, a, r, p))
    blessed, _, report = _run(examples, models["good"], None, tmp_path)

    message = blessed.get_string_custom_property("blessing_message")
    assert blessed.get_int_custom_property("blessed") == 0
    assert os.listdir(blessed.uri) == ["NOT_BLESSED"]
    assert message == (
        f"not blessed: the evaluation data is invalid: 1 of 3000 logged rows have {expected}"
    )
    assert report["blessed"] is False and report["candidate"] is None
    assert report["eval_rows"] == 3000


def test_every_problem_is_counted_across_batches(models, eval_rows, tmp_path):
    """Problems in different batches of the split (8192 rows each) add up, each named once."""
    x, a, r, p = (np.concatenate([c] * 4) for c in eval_rows)
    p[[5, 9000]] = 0.0
    r[11000] = 50.0
    examples = examples_artifact(tmp_path / "examples", (x, a, r, p))
    blessed, _, _ = _run(examples, models["good"], None, tmp_path)
    assert blessed.get_string_custom_property("blessing_message") == (
        f"not blessed: the evaluation data is invalid: 2 of 12000 logged rows have {POSITIVE} "
        "(observed 0); 1 of 12000 logged rows have rewards outside [-20.0, 20.0] (observed 50)"
    )


@pytest.mark.parametrize(
    "write, expected",
    [
        (None, "no example files (*.gz)"),
        (lambda path: tf.io.TFRecordWriter(path, options="GZIP").close(), "holds no examples"),
        (
            lambda path: write_examples(path, *(c[:3] for c in log_rows(3, 0)), gzip=False),
            "could not be parsed",
        ),
    ],
    ids=["no-files", "no-rows", "corrupt"],
)
def test_unreadable_or_empty_evaluation_split_is_refused(models, tmp_path, write, expected):
    examples = examples_artifact(tmp_path / "examples", write=write)
    blessed, _, report = _run(examples, models["good"], None, tmp_path)
    message = blessed.get_string_custom_property("blessing_message")
    assert blessed.get_int_custom_property("blessed") == 0
    assert message.startswith("not blessed: the evaluation data could not be read: ")
    assert expected in message
    assert report["eval_rows"] == 0


def test_linear_policies_are_scored_exactly_as_their_saved_models_act(models):
    queries = np.random.default_rng(5).normal(size=(400, D)).astype(np.float32)
    good = SavedPolicy(path_utils.serving_model_path(models["good"].uri))
    np.testing.assert_array_equal(
        good.probabilities(queries, samples=1),
        saved_model_probabilities(good.saved_model, queries, K),
    )
    # LinTS samples: its pi is a distribution; SavedModel draws agree with it.
    bad = SavedPolicy(path_utils.serving_model_path(models["bad"].uri))
    ours = bad.probabilities(queries[:100], samples=2000)
    theirs = saved_model_probabilities(bad.saved_model, queries[:100], K, samples=300)
    assert np.abs(ours - theirs).max() < 0.15
    assert np.abs(ours.mean(axis=0) - theirs.mean(axis=0)).max() < 0.03
    assert ours.max() < 1.0


def test_component_parameters_are_the_settings_fields():
    settings = EvaluatorSettings(blessing_estimator="ips", use_simulator=False)
    evaluator = PolicyEvaluator(
        examples=tfx.dsl.Channel(type=standard_artifacts.Examples),
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        reward_min=-5.0,
        reward_max=10.0,
        movielens_dir="",
        settings=settings,
    )
    assert evaluator.exec_properties == {
        "split": "eval", **dataclasses.asdict(settings), "reward_min": -5.0,
        "reward_max": 10.0, "movielens_dir": "", "rank_k": 0,
        # Set only by the Vertex build with vertex.experiment (tfx_pipeline/vertex/runner.py).
        "vertex_experiment": None, "vertex_experiment_run": None,
    }
    assert executor.settings_from_exec_properties(evaluator.exec_properties) == settings


# --- a real DAG -------------------------------------------------------------------------------

movielens = pytest.mark.skipif(
    not (default_data_dir() / "u.data").exists(),
    reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
)


def _pipeline(root, data_dir, push_dir, trainer_settings: TrainerSettings) -> tfx.dsl.Pipeline:
    example_gen = tfx.components.ImportExampleGen(input_base=str(data_dir))
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = BanditSchemaGen(
        observation_dim=20, num_actions=20, reward_min=-5.0, reward_max=10.0, min_propensity=1e-6
    )
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
    )
    trainer = BanditTrainer(
        examples=example_gen.outputs["examples"],
        example_anomalies=validator.outputs["anomalies"],
        observation_dim=20,
        num_actions=20,
        settings=trainer_settings,
    )
    baseline = latest_blessed_model_resolver()
    evaluator = PolicyEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        reward_min=-5.0,
        reward_max=10.0,
        movielens_dir="",
        settings=EvaluatorSettings(bootstrap_samples=200),
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=str(push_dir))
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name="evaluator-test",
        pipeline_root=str(root / "pipeline_root"),
        components=[
            example_gen, statistics, schema, validator, trainer, baseline, evaluator, pusher
        ],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")
        ),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    )


@movielens
def test_dag_blesses_and_pushes_a_good_policy_then_refuses_a_worse_one(tmp_path):
    from custom_components.movielens_generator.logged_data import simulate_uniform_logging
    from simulation.bandit_loader import load_movielens_bandit

    bandit = load_movielens_bandit("", 20, 20)
    logged = simulate_uniform_logging(bandit, 3000, seed=3)
    data_dir = tmp_path / "logged"
    data_dir.mkdir()
    write_examples(
        str(data_dir / "data.tfrecord"),
        logged.observations, logged.actions, logged.rewards, logged.propensities,
        users=logged.user_ids, gzip=False,
    )
    push_dir = tmp_path / "serving"
    runner = tfx.orchestration.LocalDagRunner()
    runner.run(_pipeline(tmp_path, data_dir, push_dir, TrainerSettings(agent="LinUCB", alpha=0.1)))
    assert len(os.listdir(push_dir)) == 1
    runner.run(
        _pipeline(tmp_path, data_dir, push_dir, TrainerSettings(agent="LinTS", alpha=100.0))
    )
    assert len(os.listdir(push_dir)) == 1

    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "metadata.sqlite")
    )
    with metadata.Metadata(config) as store:
        models = store.store.get_artifacts_by_type("Model")
        blessings = store.store.get_artifacts_by_type("ModelBlessing")
        evaluations = store.store.get_artifacts_by_type("ModelEvaluation")
        pushed = store.store.get_artifacts_by_type("PushedModel")
        model_runs = sorted(store.store.get_artifacts_by_type("ModelRun"), key=lambda a: a.id)
    assert [b.custom_properties["blessed"].int_value for b in blessings] == [1, 0]
    first, second = sorted(models, key=lambda m: m.id)
    assert blessings[0].custom_properties["current_model_id"].int_value == first.id
    assert "baseline_model_id" not in blessings[0].custom_properties
    assert blessings[1].custom_properties["baseline_model_id"].int_value == first.id
    assert blessings[1].custom_properties["current_model_id"].int_value == second.id
    assert [p.custom_properties["pushed"].int_value for p in pushed] == [1, 0]
    assert all(e.state == metadata_store_pb2.Artifact.LIVE for e in evaluations)

    with open(os.path.join(evaluations[0].uri, EVALUATION_FILE)) as f:
        report = json.load(f)
    truth = report["candidate"]["true_value"]
    assert report["simulator"]["oracle_value"] == pytest.approx(4.5726, abs=1e-3)
    assert truth > 0.9 * report["simulator"]["oracle_value"]
    assert abs(report["candidate"]["estimates"]["dr"]["value"] - truth) < 0.05 * truth
    assert evaluations[1].custom_properties["baseline_true_value"].double_value == pytest.approx(
        truth
    )
    scalars = read_scalars(os.path.join(evaluations[0].uri, evaluation_summaries.SUMMARY_DIR))
    assert scalars["candidate/true_value"] == [(0, pytest.approx(truth, rel=1e-6))]

    spec = tensorboard_logdir_spec(tmp_path / "metadata.sqlite").split(",")
    assert [entry.split(":", 1)[1] for entry in spec] == [
        model_runs[0].uri, evaluations[0].uri, model_runs[1].uri, evaluations[1].uri
    ]
    names = [entry.split(":", 1)[0] for entry in spec]
    assert [name.split("/")[0] for name in names] == ["evaluator-test"] * 4
    assert [name.split("/")[2] for name in names] == ["BanditTrainer", "PolicyEvaluator"] * 2
    assert names[0].split("/")[1] == names[1].split("/")[1] != names[2].split("/")[1]
