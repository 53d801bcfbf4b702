"""BanditTrainer and PolicyEvaluator record one pipeline run in Vertex AI Experiments.

The real executors run on real artifacts with the `vertex_experiment` properties a
compiled Vertex DAG gives them, against the fake control plane; the run read back
from the fake must hold what the executors wrote locally: the ModelRun's metrics
file, the ModelEvaluation's ML Metadata properties, and both TensorBoard runs.
"""

import dataclasses
import json
import os

import pytest
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from bandit_core.policy_evaluation_file import EVALUATION_FILE
from custom_components import vertex_experiments
from custom_components.bandit_trainer import executor as trainer_executor
from custom_components.bandit_trainer import training_summaries
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.policy_evaluator import evaluation_summaries
from custom_components.policy_evaluator import executor as evaluator_executor
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.vertex_calls import VertexCallError
from tests.custom_components.policy_evaluator.linear_logs import D, K, log_rows, write_examples
from tests.helpers.fake_vertex_server import FakeVertexServer
from tests.helpers.summary_events import read_scalars

PROJECT, REGION = "my-proj", "us-central1"
STORE = f"projects/{PROJECT}/locations/{REGION}/metadataStores/default"
TENSORBOARD = f"projects/{PROJECT}/locations/{REGION}/tensorboards/42"
EXPERIMENT = "movielens-bandits"
RUN = "movielens-bandits-train-20261201120000"
TB_RUN = f"{TENSORBOARD}/experiments/{EXPERIMENT}/runs/{RUN}"
SETTINGS = TrainerSettings(
    agent="NeuralEpsilonGreedy", hidden_layers="8,4", batch_size=64, epochs=3, seed=3
)


def _artifact(kind, uri, splits=None):
    artifact = kind()
    artifact.uri = str(uri)
    os.makedirs(artifact.uri, exist_ok=True)
    if splits is not None:
        artifact.split_names = artifact_utils.encode_split_names(splits)
    return artifact


def _examples(root):
    examples = _artifact(standard_artifacts.Examples, root, ["train", "eval"])
    for split, seed in (("train", 1), ("eval", 2)):
        split_dir = os.path.join(examples.uri, f"Split-{split}")
        os.makedirs(split_dir)
        write_examples(os.path.join(split_dir, "data.gz"), *log_rows(600, seed))
    return examples


def _properties(fake, tensorboard=TENSORBOARD):
    target = vertex_experiments.ExperimentTarget(
        PROJECT, REGION, EXPERIMENT, tensorboard, api_endpoint=fake.endpoint
    )
    return {
        vertex_experiments.EXPERIMENT_PROPERTY: target.to_json(),
        vertex_experiments.RUN_PROPERTY: RUN,
    }


def _train(examples, root, properties):
    model = _artifact(standard_artifacts.Model, root / "model")
    model_run = _artifact(standard_artifacts.ModelRun, root / "model_run")
    trainer_executor.Executor().Do(
        {
            "examples": [examples],
            "example_anomalies": [_artifact(standard_artifacts.ExampleAnomalies, root / "a", [])],
        },
        {"model": [model], "model_run": [model_run]},
        {
            "observation_dim": D,
            "num_actions": K,
            "problem": "classic",
            **dataclasses.asdict(SETTINGS),
            **properties,
        },
    )
    return model, model_run


def _evaluate(examples, model, root, properties):
    evaluation = _artifact(standard_artifacts.ModelEvaluation, root / "evaluation")
    evaluator_executor.Executor().Do(
        {"examples": [examples], "model": [model], "baseline_model": []},
        {
            "blessing": [_artifact(standard_artifacts.ModelBlessing, root / "blessing")],
            "evaluation": [evaluation],
        },
        {
            "split": "eval",
            **dataclasses.asdict(EvaluatorSettings(bootstrap_samples=200, policy_samples=16)),
            "reward_min": -20.0,
            "reward_max": 20.0,
            **properties,
        },
    )
    return evaluation


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One pipeline run's trainer and evaluator, recorded into the fake."""
    root = tmp_path_factory.mktemp("run")
    with FakeVertexServer() as fake:
        fake.experiments.add_tensorboard(TENSORBOARD)
        examples = _examples(root / "examples")
        model, model_run = _train(examples, root, _properties(fake))
        trained = fake.experiments.contexts[f"{STORE}/contexts/{EXPERIMENT}-{RUN}"]["metadata"]
        trained = json.loads(json.dumps(trained))  # as it was after the trainer
        evaluation = _evaluate(examples, model, root, _properties(fake))
        yield fake, trained, model_run, evaluation


def test_the_trainer_records_its_agent_settings_rows_and_final_loss(recorded):
    fake, trained, model_run, _ = recorded
    with open(os.path.join(model_run.uri, trainer_executor.METRICS_FILE)) as f:
        metrics = json.load(f)
    losses = read_scalars(os.path.join(model_run.uri, training_summaries.SUMMARY_DIR))
    assert trained["_state"] == "RUNNING"
    assert trained["_params"] == {
        "agent": "NeuralEpsilonGreedy",
        "problem": "classic",
        "train_rows": metrics["train_rows"],
        **{k: v for k, v in metrics["hyperparameters"].items() if k != "hidden_layers"},
        "hidden_layers": "8,4",
    }
    assert trained["_metrics"] == {
        "train_rows": 600,
        "training_seconds": metrics["training_seconds"],
        "mean_logged_reward": metrics["mean_logged_reward"],
        # The last point of TensorBoard's loss/epoch chart, which keeps float32.
        "final_training_loss": pytest.approx(losses["loss/epoch"][-1][1], rel=1e-6),
    }
    assert [step for step, _ in losses["loss/epoch"]] == [0, 1, 2]


def test_the_evaluator_adds_each_estimate_interval_and_the_blessing(recorded):
    fake, trained, _, evaluation = recorded
    run = fake.experiments.contexts[f"{STORE}/contexts/{EXPERIMENT}-{RUN}"]["metadata"]
    with open(os.path.join(evaluation.uri, EVALUATION_FILE)) as f:
        report = json.load(f)
    mlmd_numbers = {
        name: evaluation.get_float_custom_property(name)
        for name in evaluation.mlmd_artifact.custom_properties
        if evaluation.mlmd_artifact.custom_properties[name].HasField("double_value")
    }
    assert run["_state"] == "COMPLETE"
    assert run["_params"] == {
        **trained["_params"],
        **{f"blessing_{name}": value for name, value in report["rule"].items()},
    }
    assert run["_metrics"] == {
        **trained["_metrics"],
        **mlmd_numbers,
        "blessed": int(report["blessed"]),
        "eval_rows": report["eval_rows"],
    }
    for estimator in ("ips", "snips", "dm", "dr"):
        estimate = report["candidate"]["estimates"][estimator]
        assert run["_metrics"][f"candidate_{estimator}_lower"] == estimate["lower"]
        assert run["_metrics"][f"candidate_{estimator}_upper"] == estimate["upper"]


def test_both_tensorboard_runs_become_the_runs_time_series(recorded):
    fake, _, model_run, evaluation = recorded
    local = {
        **read_scalars(os.path.join(model_run.uri, training_summaries.SUMMARY_DIR)),
        **read_scalars(os.path.join(evaluation.uri, evaluation_summaries.SUMMARY_DIR)),
    }
    assert "loss/batch" in local and "candidate/dr_lower" in local
    assert fake.experiments.scalars(TB_RUN) == local


def test_a_run_that_cannot_be_recorded_fails_but_keeps_the_trained_policy(tmp_path):
    missing = f"projects/{PROJECT}/locations/{REGION}/tensorboards/7"
    with FakeVertexServer() as fake:
        with pytest.raises(VertexCallError) as raised:
            _train(_examples(tmp_path / "examples"), tmp_path, _properties(fake, missing))
    model_dir = path_utils.serving_model_dir(str(tmp_path / "model"))
    assert str(raised.value).startswith(f"invalid setting vertex.tensorboard: {missing}")
    assert f"The trained policy is saved in {model_dir}, but this run is not recorded" in str(
        raised.value
    )
    assert os.path.exists(os.path.join(model_dir, "saved_model.pb"))
