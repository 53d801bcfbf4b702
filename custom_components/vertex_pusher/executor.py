"""Copies a blessed policy beside the push output and rolls it out on the Vertex endpoint."""

import dataclasses
import json
import time
from typing import Any, Dict, List, Mapping, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from bandit_core.policy_evaluation_file import read_policy_evaluation
from custom_components.vertex_pusher import rollout
from custom_components.vertex_pusher.endpoint_client import EndpointClient
from custom_components.vertex_pusher.settings import RolloutSettings


def settings_from_exec_properties(exec_properties: Dict[str, Any]) -> RolloutSettings:
    return RolloutSettings(
        **{f.name: exec_properties[f.name] for f in dataclasses.fields(RolloutSettings)}
    ).validate()


def read_evaluation(artifacts: Optional[List[types.Artifact]]) -> Optional[Mapping[str, Any]]:
    """The run's evaluation JSON, or None when the component was given none."""
    if not artifacts:
        return None
    return read_policy_evaluation(artifact_utils.get_single_instance(artifacts).uri)


class Executor(tfx_pusher_executor.Executor):
    """TFX's Pusher contract (blessing check, PushedModel marks) with a rollout as the push.

    The rollout runs on every run, blessed or not, because a running canary
    is settled by this run's evaluation either way.
    """

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        settings = settings_from_exec_properties(exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        artifact_uri = None
        if self.CheckBlessing(input_dict):
            io_utils.copy_dir(src=self.GetModelPath(input_dict), dst=model_push.uri)
            artifact_uri = model_push.uri
        result = rollout.push(
            EndpointClient(settings),
            artifact_uri,
            _model_display_name(settings.endpoint_name),
            read_evaluation(input_dict.get("evaluation")),
        )
        logging.info("VertexRolloutPusher: %s", json.dumps(result.to_json()))
        model_push.set_string_custom_property("rollout", json.dumps(result.to_json()))
        if not result.model:
            self._MarkNotPushed(model_push)
            return
        model_push.set_string_custom_property("vertex_endpoint", result.endpoint)
        model_push.set_string_custom_property("vertex_deployed_model_id", result.deployed_model_id)
        self._MarkPushed(model_push, pushed_destination=result.model)


def _model_display_name(endpoint_name: str) -> str:
    """The endpoint's name and the UTC push time, within Vertex's 128 characters."""
    return f"{endpoint_name[:112]}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
