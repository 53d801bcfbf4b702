"""PolicyEvaluator: off-policy evaluation of a candidate policy, and its blessing."""

import dataclasses
import typing
from typing import Optional

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from custom_components.policy_evaluator import executor
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.vertex_experiments import (
    EXPERIMENT_PROPERTY,
    RUN_PROPERTY,
)

_SETTING_TYPES = typing.get_type_hints(EvaluatorSettings)


class PolicyEvaluatorSpec(types.ComponentSpec):
    """Eval examples, candidate and optional baseline in; a blessing and the estimates out."""

    PARAMETERS = {
        "split": ExecutionParameter(type=str),
        **{
            f.name: ExecutionParameter(type=_SETTING_TYPES[f.name])
            for f in dataclasses.fields(EvaluatorSettings)
        },
        "reward_min": ExecutionParameter(type=float),
        "reward_max": ExecutionParameter(type=float),
        "movielens_dir": ExecutionParameter(type=str, optional=True),
        "rank_k": ExecutionParameter(type=int, optional=True),
        EXPERIMENT_PROPERTY: ExecutionParameter(type=str, optional=True),
        RUN_PROPERTY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
    }


class PolicyEvaluator(base_component.BaseComponent):
    """Estimates the candidate's and the baseline's value; blesses by a rule.

    IPS, SNIPS, DM and DR with bootstrap intervals on the `split` of the logged
    examples, plus true values when `settings.use_simulator` and `movielens_dir`
    is given ("" means the default MovieLens location; None means no
    simulator). `settings` hold the estimation knobs and the blessing rule
    (see `settings.EvaluatorSettings`); rewards outside [reward_min,
    reward_max] make the data invalid. Its `blessing` output carries TFX's
    `blessed` custom property, so the stock Pusher pushes only blessed
    policies; bad evaluation data is a refusal to bless, with the reason in
    `blessing_message` and in the evaluation JSON. A per-arm candidate (its
    sidecar says so) is evaluated over the logged candidate sets; its
    simulator is the per-arm MovieLens problem of SVD rank `rank_k`. Given
    `vertex_experiment` (an `ExperimentTarget` as JSON) and
    `vertex_experiment_run`, it records the evaluation in that Vertex AI
    Experiments run (`custom_components.vertex_experiments`).
    """

    SPEC_CLASS = PolicyEvaluatorSpec
    # A Beam spec because the executor is, through TFX's Evaluator executor, a
    # BaseBeamExecutor, which refuses the context a plain executor spec gives it.
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        reward_min: float,
        reward_max: float,
        baseline_model: Optional[types.BaseChannel] = None,
        movielens_dir: Optional[str] = None,
        split: str = "eval",
        settings: EvaluatorSettings = EvaluatorSettings(),
        rank_k: int = 0,
        vertex_experiment: Optional[str] = None,
        vertex_experiment_run: Optional[str] = None,
    ):
        super().__init__(
            spec=PolicyEvaluatorSpec(
                examples=examples,
                model=model,
                baseline_model=baseline_model,
                split=split,
                **dataclasses.asdict(settings),
                reward_min=reward_min,
                reward_max=reward_max,
                movielens_dir=movielens_dir,
                rank_k=rank_k,
                vertex_experiment=vertex_experiment,
                vertex_experiment_run=vertex_experiment_run,
                blessing=types.Channel(type=standard_artifacts.ModelBlessing),
                evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            )
        )


BASELINE_RESOLVER_ID = "latest_blessed_model_resolver"


def latest_blessed_model_resolver() -> tfx.dsl.Resolver:
    """The baseline: this pipeline's newest Model whose ModelBlessing says blessed.

    Pusher pushes exactly the blessed models, so this is the policy currently
    pushed by the pipeline; on the first run it resolves nothing and the
    evaluator compares the candidate with the logging policy. Its `model`
    output feeds PolicyEvaluator's `baseline_model`.
    """
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing),
    ).with_id(BASELINE_RESOLVER_ID)
