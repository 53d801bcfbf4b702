"""BanditTrainer: trains a TF-Agents bandit agent off-policy from logged examples."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from custom_components.bandit_trainer import executor


class BanditTrainerSpec(types.ComponentSpec):
    """Examples and their validation in; a PolicySaver policy and run metrics out."""

    PARAMETERS = {
        "observation_dim": ExecutionParameter(type=int),
        "num_actions": ExecutionParameter(type=int),
        "agent": ExecutionParameter(type=str),
        "alpha": ExecutionParameter(type=float),
        "tikhonov_weight": ExecutionParameter(type=float),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "example_anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
    }
    OUTPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_run": ChannelParameter(type=standard_artifacts.ModelRun),
    }


class BanditTrainer(base_component.BaseComponent):
    """Refuses anomalous data, then fits the agent on the train split.

    It consumes ExampleValidator's anomalies so that a bad batch stops the run
    here, before anything is trained or pushed.
    """

    SPEC_CLASS = BanditTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        example_anomalies: types.BaseChannel,
        observation_dim: int,
        num_actions: int,
        agent: str,
        alpha: float,
        tikhonov_weight: float,
    ):
        super().__init__(
            spec=BanditTrainerSpec(
                examples=examples,
                example_anomalies=example_anomalies,
                observation_dim=observation_dim,
                num_actions=num_actions,
                agent=agent,
                alpha=alpha,
                tikhonov_weight=tikhonov_weight,
                model=types.Channel(type=standard_artifacts.Model),
                model_run=types.Channel(type=standard_artifacts.ModelRun),
            )
        )
