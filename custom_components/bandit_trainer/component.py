"""BanditTrainer: trains a TF-Agents bandit agent off-policy from logged examples."""

import dataclasses
import typing
from typing import Any, Dict, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from bandit_core.policy_metadata import CLASSIC, PER_ARM
from custom_components.bandit_trainer import executor
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.vertex_experiments import (
    EXPERIMENT_PROPERTY,
    RUN_PROPERTY,
)

_SETTING_TYPES = typing.get_type_hints(TrainerSettings)


class BanditTrainerSpec(types.ComponentSpec):
    """Examples and their validation in; a PolicySaver policy and run metrics out."""

    PARAMETERS = {
        "observation_dim": ExecutionParameter(type=int),
        "num_actions": ExecutionParameter(type=int),
        "problem": ExecutionParameter(type=str, optional=True),
        "arm_dim": ExecutionParameter(type=int, optional=True),
        "feature_version": ExecutionParameter(type=str, optional=True),
        EXPERIMENT_PROPERTY: ExecutionParameter(type=str, optional=True),
        RUN_PROPERTY: ExecutionParameter(type=str, optional=True),
        **{
            f.name: ExecutionParameter(type=_SETTING_TYPES[f.name])
            for f in dataclasses.fields(TrainerSettings)
        },
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "example_anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        "items": ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_run": ChannelParameter(type=standard_artifacts.ModelRun),
    }


def spec_arguments(
    examples: types.BaseChannel,
    example_anomalies: types.BaseChannel,
    observation_dim: int,
    num_actions: int,
    settings: TrainerSettings,
    items: Optional[types.BaseChannel] = None,
    arm_dim: int = 0,
    feature_version: str = "",
    vertex_experiment: Optional[str] = None,
    vertex_experiment_run: Optional[str] = None,
) -> Dict[str, Any]:
    """BanditTrainerSpec's arguments: every setting becomes an execution parameter.

    Shared with the Vertex job variant so that both take the same arguments.
    With `items` the problem is per-arm: `observation_dim` is the users'
    feature length, `num_actions` the candidates per round, and `items` the
    movies (features of `feature_version`, length `arm_dim`) that the policy
    ships with. `vertex_experiment` (an `ExperimentTarget` as JSON) and
    `vertex_experiment_run` (the run's name) make the trainer record the run in
    Vertex AI Experiments (`custom_components.vertex_experiments`).
    """
    per_arm = items is not None
    return dict(
        examples=examples,
        example_anomalies=example_anomalies,
        items=items,
        problem=PER_ARM if per_arm else CLASSIC,
        arm_dim=arm_dim if per_arm else 0,
        feature_version=feature_version if per_arm else "",
        vertex_experiment=vertex_experiment,
        vertex_experiment_run=vertex_experiment_run,
        observation_dim=observation_dim,
        num_actions=num_actions,
        **dataclasses.asdict(settings),
        **{
            name: types.Channel(type=output.type)
            for name, output in BanditTrainerSpec.OUTPUTS.items()
        },
    )


class BanditTrainer(base_component.BaseComponent):
    """Refuses anomalous data, then fits the agent on the train split.

    It consumes ExampleValidator's anomalies so that a bad batch stops the run
    here, before anything is trained or pushed. `settings` choose the agent
    and its hyper-parameters (see `settings.TrainerSettings`); given `items`,
    it trains a per-arm agent; given `vertex_experiment`, it records the run in
    Vertex AI Experiments (see `spec_arguments`). It reads the split in a Beam
    pipeline run with the TFX pipeline's `beam_pipeline_args` (locally the
    DirectRunner, on Vertex the same or Dataflow).
    """

    SPEC_CLASS = BanditTrainerSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        example_anomalies: types.BaseChannel,
        observation_dim: int,
        num_actions: int,
        settings: TrainerSettings,
        items: Optional[types.BaseChannel] = None,
        arm_dim: int = 0,
        feature_version: str = "",
        vertex_experiment: Optional[str] = None,
        vertex_experiment_run: Optional[str] = None,
    ):
        arguments = spec_arguments(
            examples,
            example_anomalies,
            observation_dim,
            num_actions,
            settings,
            items,
            arm_dim,
            feature_version,
            vertex_experiment,
            vertex_experiment_run,
        )
        super().__init__(spec=BanditTrainerSpec(**arguments))
