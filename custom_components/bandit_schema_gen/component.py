"""BanditSchemaGen: emits the curated logged-interactions schema as an artifact."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter

from custom_components.bandit_schema_gen import executor
from custom_components.contract_parameters import CONTRACT_PARAMETERS


class BanditSchemaGenSpec(types.ComponentSpec):
    """Bounds of the bandit problem in, a Schema out."""

    PARAMETERS = CONTRACT_PARAMETERS
    INPUTS = {}
    OUTPUTS = {"schema": ChannelParameter(type=standard_artifacts.Schema)}


class BanditSchemaGen(base_component.BaseComponent):
    """Plays SchemaGen's part with the schema of the data contract.

    Used in place of SchemaGen so that ExampleValidator checks even the first
    batch against the bandit's real action domain, observation length, reward
    range and propensity bounds. Its parameters are the fields of
    `bandit_core.data_contract.DataContract`: with `arm_dim` > 0 it is the
    per-arm schema, `num_actions` being the candidates per round.
    """

    SPEC_CLASS = BanditSchemaGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        observation_dim: int,
        num_actions: int,
        reward_min: float,
        reward_max: float,
        min_propensity: float,
        arm_dim: int = 0,
    ):
        super().__init__(
            spec=BanditSchemaGenSpec(
                observation_dim=observation_dim,
                num_actions=num_actions,
                reward_min=reward_min,
                reward_max=reward_max,
                min_propensity=min_propensity,
                arm_dim=arm_dim,
                schema=types.Channel(type=standard_artifacts.Schema),
            )
        )
