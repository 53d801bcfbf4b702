"""VertexRolloutPusher: TFX's Pusher for one Vertex endpoint, without leaking deployments.

TFX's Vertex Pusher deploys every blessed model to the endpoint and never
undeploys one, so serving cost grows with every scheduled run. This pusher
keeps the serving model and one to roll back to, optionally gives the new
model a canary share that the next run's evaluation promotes or rolls back,
and moves traffic before undeploying anything.
"""

import dataclasses
import typing
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from custom_components.vertex_pusher import executor
from custom_components.vertex_pusher.settings import RolloutSettings

_SETTING_TYPES = typing.get_type_hints(RolloutSettings)


class VertexRolloutPusherSpec(types.ComponentSpec):
    """A model, its blessing and the run's evaluation in; the PushedModel out."""

    PARAMETERS = {
        f.name: ExecutionParameter(type=_SETTING_TYPES[f.name])
        for f in dataclasses.fields(RolloutSettings)
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }
    OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


class VertexRolloutPusher(base_component.BaseComponent):
    """Rolls a blessed model out on the endpoint of `settings` (see `endpoint_rollout`)."""

    SPEC_CLASS = VertexRolloutPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        settings: RolloutSettings,
        evaluation: Optional[types.BaseChannel] = None,
    ):
        """
        Args:
          model: the trainer's model.
          model_blessing: the evaluator's blessing; an unblessed model is not deployed.
          settings: the endpoint and how models are served on it.
          evaluation: the evaluator's ModelEvaluation (PolicyEvaluator's JSON),
            which settles a running canary; without it a canary is rolled back.
        """
        super().__init__(
            spec=VertexRolloutPusherSpec(
                model=model,
                model_blessing=model_blessing,
                evaluation=evaluation,
                pushed_model=types.Channel(type=standard_artifacts.PushedModel),
                **dataclasses.asdict(settings.validate()),
            )
        )
