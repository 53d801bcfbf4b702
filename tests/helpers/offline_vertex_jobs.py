"""TFX's Vertex job client with no API connection, for tests that need only the CustomJob."""

import json
from typing import Any, Dict, List

from tfx import types
from tfx.extensions.google_cloud_ai_platform import constants, training_clients
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
from tfx.types import standard_component_specs
from tfx.utils import name_utils


class OfflineJobClient(training_clients.VertexJobClient):
    """TFX's Vertex job client without its API connection: it only builds the CustomJob."""

    def create_client(self) -> None:
        self._client = None


def job_container(
    executor: vertex_trainer_executor.GenericExecutor,
    input_dict: Dict[str, List[types.Artifact]],
    output_dict: Dict[str, List[types.Artifact]],
    exec_properties: Dict[str, Any],
) -> Dict[str, Any]:
    """The container spec of the CustomJob's one worker pool, as TFX would submit it."""
    custom_config = json.loads(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY])
    job = OfflineJobClient(custom_config.get(constants.VERTEX_REGION_KEY, "us-central1"))
    spec = job.create_training_job(
        input_dict,
        output_dict,
        exec_properties,
        name_utils.get_full_name(executor._GetExecutorClass()),
        custom_config[vertex_trainer_executor.TRAINING_ARGS_KEY],
        None,
        None,
    )
    (pool,) = spec["job_spec"]["worker_pool_specs"]
    return pool["container_spec"]
