"""BanditTrainer whose training runs as a Vertex AI custom training job.

TFX's Vertex training support launches any executor class in a CustomJob
(`python -m tfx.scripts.run_executor` in the job's container) and waits for
it; the pipeline step only submits and polls. Pointing it at our executor
keeps training identical to the in-process BanditTrainer, anomaly gate
included, while the job gets its own machine type. The job's container keeps
the Model properties it sets, so the step sets them again from the job's files.
"""

from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from custom_components.bandit_trainer import executor
from custom_components.bandit_trainer.component import BanditTrainerSpec, spec_arguments

CUSTOM_CONFIG_KEY = "custom_config"


class VertexJobExecutor(vertex_trainer_executor.GenericExecutor):
    """Submits our trainer executor as a Vertex custom job, waits, then records its Model."""

    def _GetExecutorClass(self):
        return executor.Executor

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        executor.restore_model_properties(output_dict)


class VertexJobBanditTrainerSpec(BanditTrainerSpec):
    """BanditTrainer's spec plus the job's custom_config (a JSON string)."""

    PARAMETERS = {
        **BanditTrainerSpec.PARAMETERS,
        CUSTOM_CONFIG_KEY: ExecutionParameter(type=str),
    }


class VertexJobBanditTrainer(base_component.BaseComponent):
    """BanditTrainer's arguments, outputs and node id; trains in a Vertex job.

    `custom_config` is the TFX Vertex trainer's: `ai_platform_enable_vertex`,
    `ai_platform_vertex_region` and `ai_platform_training_args` (the project
    and a CustomJob `job_spec`). The other arguments are BanditTrainer's own
    (`component.spec_arguments`), so the two cannot drift apart.
    """

    SPEC_CLASS = VertexJobBanditTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(VertexJobExecutor)

    def __init__(self, custom_config: Dict[str, Any], **trainer_args: Any):
        super().__init__(
            spec=VertexJobBanditTrainerSpec(
                custom_config=json_utils.dumps(custom_config), **spec_arguments(**trainer_args)
            )
        )
        self.with_id("BanditTrainer")
