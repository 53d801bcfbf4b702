"""Reads artifacts, evaluates in a Beam pipeline, writes the blessing and the evaluation."""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from bandit_core.policy_evaluation_file import write_policy_evaluation
from bandit_core.policy_metadata import PER_ARM, read_policy_metadata
from custom_components.policy_evaluator import (
    beam_evaluation,
    evaluation,
    evaluation_summaries,
    experiment_record,
    ope_sums,
)
from custom_components.policy_evaluator.evaluation_passes import FirstPass, Passes
from custom_components.policy_evaluator.per_arm_evaluation import evaluate_per_arm_passes
from custom_components.policy_evaluator.per_arm_target_policy import PerArmSavedPolicy
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.policy_evaluator.target_policy import SavedPolicy
from simulation import movielens_per_arm
from simulation.bandit_loader import load_movielens_bandit
from simulation.movielens_data import MovieLensDataError
from simulation.movielens_environment import MovieLensBandit
from simulation.movielens_per_arm import MovieLensPerArmBandit

# A scratch directory in the evaluation artifact for the Beam pipeline's summed results.
_BEAM_RESULT_DIR = "beam_sums"


def settings_from_exec_properties(exec_properties: Dict[str, Any]) -> EvaluatorSettings:
    """The component's execution parameters as validated EvaluatorSettings."""
    return EvaluatorSettings(
        **{f.name: exec_properties[f.name] for f in dataclasses.fields(EvaluatorSettings)}
    ).validate()


def load_simulator(
    movielens_dir: Optional[str], observation_dim: int, num_actions: int
) -> Tuple[Optional[MovieLensBandit], str]:
    """(bandit, "") when MovieLens is configured and usable, else (None, why not)."""
    if movielens_dir is None:
        return None, "no movielens_dir configured"
    try:
        return load_movielens_bandit(movielens_dir, observation_dim, num_actions), ""
    except (MovieLensDataError, ValueError) as e:
        return None, f"MovieLens simulator unavailable: {e}"


def load_per_arm_simulator(
    movielens_dir: Optional[str], rank_k: int
) -> Tuple[Optional[MovieLensPerArmBandit], str]:
    """(per-arm bandit, "") when MovieLens is configured and usable, else (None, why not)."""
    if movielens_dir is None:
        return None, "no movielens_dir configured"
    if rank_k < 1:
        return None, "no rank_k configured for the per-arm simulator"
    try:
        return movielens_per_arm.load_per_arm_bandit(movielens_dir, rank_k), ""
    except (MovieLensDataError, ValueError) as e:
        return None, f"MovieLens simulator unavailable: {e}"


class Executor(tfx_evaluator_executor.Executor):
    """Evaluates `model` (and `baseline_model`) on the eval split; blesses or not.

    It derives from TFX's Evaluator executor for one reason: on Vertex AI, TFX's
    step entry point (`kubeflow_v2_run_executor`) turns a blessing's integer
    `current_model_id` and `baseline_model_id` into Vertex ML Metadata resource
    names only for such subclasses, and the compiled latest-blessed-model
    resolver looks the blessed Model up by that name. Without the names every
    Vertex run finds no baseline. `Do` is entirely this component's; nothing of
    TFMA runs. The evaluation is a Beam pipeline (`beam_evaluation`) built with
    the pipeline's `beam_pipeline_args`, so on Dataflow no machine holds the
    split; its sums give the same numbers as `evaluation.evaluate` in memory.
    """

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        settings = settings_from_exec_properties(exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        baseline_model = (input_dict.get("baseline_model") or [None])[0]
        candidate_dir = path_utils.serving_model_path(model.uri)
        baseline_dir = None
        if baseline_model is not None:
            baseline_dir = path_utils.serving_model_path(baseline_model.uri)
        evaluation_artifact = artifact_utils.get_single_instance(output_dict["evaluation"])
        # The pipeline's summed results pass through here, then the directory goes.
        result_dir = os.path.join(evaluation_artifact.uri, _BEAM_RESULT_DIR)

        def run(passes: Passes) -> Tuple[FirstPass, Optional[ope_sums.Sums]]:
            split_dir = artifact_utils.get_split_uri([examples], exec_properties["split"])
            try:
                return beam_evaluation.run(
                    self._make_beam_pipeline(), split_dir, passes, result_dir
                )
            finally:
                if tf.io.gfile.exists(result_dir):
                    tf.io.gfile.rmtree(result_dir)

        evaluate = (
            _evaluate_per_arm
            if read_policy_metadata(candidate_dir).problem == PER_ARM
            else _evaluate_classic
        )
        result = evaluate(run, candidate_dir, baseline_dir, settings, exec_properties)
        _write_blessing(
            artifact_utils.get_single_instance(output_dict["blessing"]),
            result,
            model,
            baseline_model,
        )
        _write_evaluation(evaluation_artifact, result)
        logging.info("PolicyEvaluator: %s", result.decision.reason)
        experiment_record.record_evaluation(
            exec_properties, result.to_json(), evaluation_artifact.uri
        )


def _evaluate_classic(
    run: evaluation.Run,
    candidate_dir: str,
    baseline_dir: Optional[str],
    settings: EvaluatorSettings,
    exec_properties: Dict[str, Any],
) -> evaluation.Evaluation:
    candidate = SavedPolicy(candidate_dir)
    baseline = None
    if baseline_dir is not None and read_policy_metadata(baseline_dir).problem != PER_ARM:
        baseline = SavedPolicy(baseline_dir)
    bandit, simulator_note = load_simulator(
        exec_properties.get("movielens_dir") if settings.use_simulator else None,
        candidate.metadata.observation_dim,
        candidate.metadata.num_actions,
    )
    return evaluation.evaluate_classic(
        run,
        candidate,
        baseline,
        settings,
        reward_range=(exec_properties["reward_min"], exec_properties["reward_max"]),
        bandit=bandit,
        simulator_note=simulator_note,
    )


def _evaluate_per_arm(
    run: evaluation.Run,
    candidate_dir: str,
    baseline_dir: Optional[str],
    settings: EvaluatorSettings,
    exec_properties: Dict[str, Any],
) -> evaluation.Evaluation:
    candidate = PerArmSavedPolicy(candidate_dir)
    baseline = None
    if baseline_dir is not None and read_policy_metadata(baseline_dir).problem == PER_ARM:
        baseline = PerArmSavedPolicy(baseline_dir)
    bandit, simulator_note = load_per_arm_simulator(
        exec_properties.get("movielens_dir") if settings.use_simulator else None,
        exec_properties.get("rank_k") or 0,
    )
    return evaluate_per_arm_passes(
        run,
        candidate,
        baseline,
        settings,
        reward_range=(exec_properties["reward_min"], exec_properties["reward_max"]),
        bandit=bandit,
        simulator_note=simulator_note,
    )


def _write_blessing(
    blessing_artifact: types.Artifact,
    result: evaluation.Evaluation,
    model: types.Artifact,
    baseline_model: Optional[types.Artifact],
) -> None:
    """Marks the blessing the way TFX's Evaluator does, so the stock Pusher honours it."""
    marker = constants.BLESSED_FILE_NAME if result.blessed else constants.NOT_BLESSED_FILE_NAME
    io_utils.write_string_file(os.path.join(blessing_artifact.uri, marker), "")
    blessing_artifact.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        constants.BLESSED_VALUE if result.blessed else constants.NOT_BLESSED_VALUE,
    )
    blessing_artifact.set_string_custom_property(
        constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri
    )
    blessing_artifact.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id
    )
    if baseline_model is not None:
        blessing_artifact.set_string_custom_property(
            constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline_model.uri
        )
        blessing_artifact.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline_model.id
        )
    blessing_artifact.set_string_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, result.decision.reason
    )


def _write_evaluation(evaluation_artifact: types.Artifact, result: evaluation.Evaluation) -> None:
    """The full JSON as a file; its numbers as MLMD custom properties and TensorBoard scalars."""
    report = result.to_json()
    write_policy_evaluation(evaluation_artifact.uri, report)
    evaluation_summaries.write_evaluation_summaries(evaluation_artifact.uri, report)
    evaluation_artifact.set_int_custom_property("blessed", int(result.blessed))
    evaluation_artifact.set_string_custom_property("reason", result.decision.reason)
    evaluation_artifact.set_int_custom_property("eval_rows", result.eval_rows)
    if result.logging_value is not None:
        evaluation_artifact.set_float_custom_property("logging_policy_value", result.logging_value)
    for role, name, value in evaluation_summaries.policy_numbers(report):
        evaluation_artifact.set_float_custom_property(f"{role}_{name}", value)
    for name, value in report["simulator"].items():
        if isinstance(value, float):
            evaluation_artifact.set_float_custom_property(name, value)
