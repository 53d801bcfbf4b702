"""The evaluator's Beam pipeline against the in-memory path, and the Poisson bootstrap.

The pipeline and `evaluation.evaluate` add up the same per-row sums, so they
must agree to float rounding on the same split, whichever runner (one process
or several) runs the pipeline. The Poisson bootstrap is checked against the
multinomial one on known data, including rows logged many times over.
"""

import dataclasses
import os

import apache_beam as beam
import numpy as np
import pytest
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from bandit_core import logged_examples
from bandit_core.policy_evaluation_file import read_policy_evaluation
from custom_components.policy_evaluator import (
    beam_evaluation,
    evaluation,
    executor,
    ope,
    ope_sums,
    poisson_bootstrap,
    row_hashing,
)
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.policy_evaluator.target_policy import SavedPolicy
from tests.custom_components.policy_evaluator.linear_logs import examples_artifact, write_examples

SETTINGS = EvaluatorSettings(bootstrap_samples=200, policy_samples=16)
REWARD_RANGE = (-20.0, 20.0)
MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.fixture(scope="module")
def examples(tmp_path_factory, eval_rows) -> standard_artifacts.Examples:
    """The eval rows three times over, in two files: equal rows sit in both files."""
    rows = [np.concatenate([column] * 3) for column in eval_rows]

    def write(path: str) -> None:
        write_examples(path, *(column[:5000] for column in rows))
        write_examples(os.path.join(os.path.dirname(path), "more.gz"), *(c[5000:] for c in rows))

    return examples_artifact(tmp_path_factory.mktemp("examples"), write=write)


@pytest.fixture(scope="module")
def split_dir(examples) -> str:
    return artifact_utils.get_split_uri([examples], "eval")


def _policies(models):
    return (
        SavedPolicy(path_utils.serving_model_path(models["good"].uri)),
        SavedPolicy(path_utils.serving_model_path(models["bad"].uri)),
    )


def _in_memory(models, split_dir) -> evaluation.Evaluation:
    candidate, baseline = _policies(models)
    return evaluation.evaluate(
        lambda dim: logged_examples.read_split(split_dir, dim, allow_missing=True),
        candidate, baseline, SETTINGS, REWARD_RANGE,
    )


def _assert_same(piped: dict, in_memory: dict) -> None:
    """Both evaluations' JSON: equal, numbers within 1e-9 relative."""
    assert piped["eval_rows"] == in_memory["eval_rows"]
    assert piped["blessed"] == in_memory["blessed"]
    assert piped["logging_policy_value"] == pytest.approx(
        in_memory["logging_policy_value"], rel=1e-12
    )
    for role in ("candidate", "baseline"):
        for name, estimate in in_memory[role]["estimates"].items():
            for end in ("value", "lower", "upper"):
                assert piped[role]["estimates"][name][end] == pytest.approx(
                    estimate[end], rel=1e-9
                ), (role, name, end)


def test_the_pipeline_agrees_with_the_in_memory_evaluation(models, split_dir, tmp_path):
    candidate, baseline = _policies(models)
    piped = evaluation.evaluate_classic(
        lambda passes: beam_evaluation.run(beam.Pipeline(), split_dir, passes, str(tmp_path)),
        candidate, baseline, SETTINGS, REWARD_RANGE,
    )
    in_memory = _in_memory(models, split_dir)
    assert in_memory.eval_rows == 9000 and in_memory.baseline.agent == "LinTS"
    _assert_same(piped.to_json(), in_memory.to_json())
    assert os.listdir(tmp_path) == []


def test_the_executor_runs_the_pipeline_on_several_worker_processes(
    models, examples, split_dir, tmp_path
):
    """DirectRunner multi-processing: each worker reads, merges and scores only its part."""
    outputs = {}
    for name, kind in (
        ("blessing", standard_artifacts.ModelBlessing),
        ("evaluation", standard_artifacts.ModelEvaluation),
    ):
        outputs[name] = kind()
        outputs[name].uri = str(tmp_path / name)
        os.makedirs(outputs[name].uri)
    context = executor.Executor.Context(beam_pipeline_args=MULTI_PROCESSING)
    executor.Executor(context).Do(
        {"examples": [examples], "model": [models["good"]], "baseline_model": [models["bad"]]},
        {name: [artifact] for name, artifact in outputs.items()},
        {
            "split": "eval",
            **dataclasses.asdict(SETTINGS),
            "reward_min": REWARD_RANGE[0],
            "reward_max": REWARD_RANGE[1],
        },
    )
    piped = read_policy_evaluation(outputs["evaluation"].uri)
    _assert_same(piped, _in_memory(models, split_dir).to_json())
    assert "beam_sums" not in os.listdir(outputs["evaluation"].uri)


# --- row keys -------------------------------------------------------------------------------


def test_equal_rows_get_equal_keys_whatever_their_float_width():
    x = np.array([[0.5, 1.5], [0.5, 1.5], [0.5, 2.5]], dtype=np.float32)
    a = np.array([1, 1, 1])
    keys = row_hashing.row_keys([x, a])
    assert keys[0] == keys[1] != keys[2]
    np.testing.assert_array_equal(keys, row_hashing.row_keys([x.astype(np.float64), a]))
    # The same values in other positions are another row.
    assert row_hashing.row_keys([x[:, ::-1], a])[0] != keys[0]


def test_folds_depend_only_on_the_key_and_seed_and_are_balanced():
    keys = row_hashing.row_keys([np.arange(50_000)])
    folds = row_hashing.folds(keys, seed=3, num_folds=5)
    np.testing.assert_array_equal(folds[::7], row_hashing.folds(keys[::7], seed=3, num_folds=5))
    assert not np.array_equal(folds, row_hashing.folds(keys, seed=4, num_folds=5))
    np.testing.assert_allclose(np.bincount(folds) / len(keys), 0.2, atol=0.01)


# --- the Poisson bootstrap --------------------------------------------------------------------


def _logged(n: int, seed: int):
    """Uniformly logged rows of 4 actions, a target policy that prefers action 0, and its q."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 4, size=n)
    rewards = rng.normal(loc=actions == 0, scale=1.0)
    data = ope.validate_logged_data(actions, rewards, np.full(n, 0.25), 4)
    pi = np.tile([0.7, 0.1, 0.1, 0.1], (n, 1))
    q = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)) + rng.normal(scale=0.3, size=(n, 4))
    return data, pi, q


def _poisson(data, pi, q, keys, multiplicities, replicates=1000):
    terms = ope.per_row_terms(pi, data, q)
    sums = ope_sums.batch_sums(
        dict(zip(ope_sums.term_names("candidate"), (terms[t] for t in ope_sums.TERMS))),
        {}, keys, multiplicities, seed=0, replicates=replicates,
    )
    return sums.estimates("candidate", 0.95)


def _width(estimate: ope.Estimate) -> float:
    return estimate.upper - estimate.lower


def test_poisson_intervals_match_the_multinomial_ones_on_known_data():
    data, pi, q = _logged(4000, seed=1)
    keys = row_hashing.row_keys([np.arange(4000)])
    poisson = _poisson(data, pi, q, keys, np.ones(4000, dtype=int))
    multinomial = ope.off_policy_estimates(pi, data, q, num_bootstrap=1000, seed=0)
    for name in ope.ESTIMATORS:
        assert poisson[name].value == pytest.approx(multinomial[name].value, rel=1e-12)
        assert _width(poisson[name]) == pytest.approx(_width(multinomial[name]), rel=0.15), name
        assert poisson[name].lower < poisson[name].value < poisson[name].upper


def test_rows_logged_many_times_are_weighed_as_independent_copies():
    """Merging 10 equal rows into one of multiplicity 10 (Poisson(10) weights) gives the
    multinomial bootstrap's width over all 10 copies, not the sqrt(10) times wider interval
    of copies that share one Poisson(1) weight."""
    data, pi, q = _logged(400, seed=2)
    copies = np.tile(np.arange(400), 10)
    expanded = ope.LoggedData(
        data.actions[copies], data.rewards[copies], data.propensities[copies], 4
    )
    keys = row_hashing.row_keys([data.actions, data.rewards])
    first, distinct, multiplicities = poisson_bootstrap.distinct_rows(keys[copies])
    assert len(distinct) == 400 and set(multiplicities) == {10}
    rows = copies[first]
    merged = _poisson(
        ope.LoggedData(data.actions[rows], data.rewards[rows], data.propensities[rows], 4),
        pi[rows], q[rows], distinct, multiplicities,
    )
    multinomial = ope.off_policy_estimates(pi[copies], expanded, q[copies], 1000, seed=0)
    for name in ("ips", "dr"):
        assert merged[name].value == pytest.approx(multinomial[name].value, rel=1e-12)
        assert _width(merged[name]) == pytest.approx(_width(multinomial[name]), rel=0.15), name


def test_poisson_weights_are_poisson_and_fixed_by_key_seed_and_replicate():
    keys = row_hashing.row_keys([np.arange(20_000)])
    weights = poisson_bootstrap.poisson_weights(keys, np.ones(20_000, dtype=int), 0, 0, 50)
    assert weights.mean() == pytest.approx(1.0, abs=0.01)
    assert weights.var() == pytest.approx(1.0, abs=0.02)
    assert np.mean(weights == 0) == pytest.approx(np.exp(-1), abs=0.005)
    later = poisson_bootstrap.poisson_weights(keys[:100], np.ones(100, dtype=int), 0, 40, 10)
    np.testing.assert_array_equal(later, weights[:100, 40:50])
    three = poisson_bootstrap.poisson_weights(keys, np.full(20_000, 3), 0, 0, 50)
    assert three.mean() == pytest.approx(3.0, abs=0.02)
    assert three.var() == pytest.approx(3.0, abs=0.06)
