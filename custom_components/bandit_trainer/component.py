"""BanditTrainer: trains a TF-Agents bandit agent off-policy from logged examples."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from custom_components.bandit_trainer import executor
from custom_components.bandit_trainer.training import TrainerSettings

_DEFAULTS = TrainerSettings()


class BanditTrainerSpec(types.ComponentSpec):
    """Examples and their validation in; a PolicySaver policy and run metrics out."""

    PARAMETERS = {
        "observation_dim": ExecutionParameter(type=int),
        "num_actions": ExecutionParameter(type=int),
        "agent": ExecutionParameter(type=str),
        "alpha": ExecutionParameter(type=float),
        "tikhonov_weight": ExecutionParameter(type=float),
        "epsilon": ExecutionParameter(type=float),
        "hidden_layers": ExecutionParameter(type=str),
        "encoding_dim": ExecutionParameter(type=int),
        "learning_rate": ExecutionParameter(type=float),
        "batch_size": ExecutionParameter(type=int),
        "epochs": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
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
    here, before anything is trained or pushed. `agent` is LinUCB, LinTS,
    NeuralEpsilonGreedy or NeuralLinUCB; settings an agent does not use are
    ignored (see `training.TrainerSettings`). `hidden_layers` is text such as
    "64,64" because TFX execution parameters are scalars.
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
        epsilon: float = _DEFAULTS.epsilon,
        hidden_layers: str = ",".join(str(u) for u in _DEFAULTS.hidden_layers),
        encoding_dim: int = _DEFAULTS.encoding_dim,
        learning_rate: float = _DEFAULTS.learning_rate,
        batch_size: int = _DEFAULTS.batch_size,
        epochs: int = _DEFAULTS.epochs,
        seed: int = _DEFAULTS.seed,
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
                epsilon=epsilon,
                hidden_layers=hidden_layers,
                encoding_dim=encoding_dim,
                learning_rate=learning_rate,
                batch_size=batch_size,
                epochs=epochs,
                seed=seed,
                model=types.Channel(type=standard_artifacts.Model),
                model_run=types.Channel(type=standard_artifacts.ModelRun),
            )
        )
