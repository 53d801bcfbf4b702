"""BanditTrainer whose training runs as a Vertex AI custom training job.

TFX's Vertex training support launches any executor class in a CustomJob
(`python -m tfx.scripts.run_executor` in the job's container) and waits for
it; the pipeline step only submits and polls. Pointing it at our executor
keeps training identical to the in-process BanditTrainer, anomaly gate
included, while the job gets its own machine type. The job's container keeps
the Model properties it sets, so the step sets them again from the job's files.
The step passes its Beam arguments on to the job, so that the trainer's Beam
pass runs there as it would in the step (on Dataflow when so configured).
"""

import copy
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
        # The step's Beam arguments (after the entry point's own path) reach it as extra flags.
        beam_args = [flag for flag in self._extra_flags or [] if flag.startswith("--")]
        custom_config = json_utils.loads(exec_properties[CUSTOM_CONFIG_KEY])
        job_properties = {
            **exec_properties,
            CUSTOM_CONFIG_KEY: json_utils.dumps(with_job_arguments(custom_config, beam_args)),
        }
        super().Do(input_dict, output_dict, job_properties)
        executor.restore_model_properties(output_dict)


def with_job_arguments(custom_config: Dict[str, Any], arguments: List[str]) -> Dict[str, Any]:
    """A copy of `custom_config` whose job containers get `arguments` after their command.

    TFX sets each container's command to `python -m tfx.scripts.run_executor`
    with the executor's inputs; Vertex runs a container's `args` after its
    command, and `run_executor` hands arguments it does not know to a Beam
    executor as its `beam_pipeline_args`.

    Raises:
      ValueError: a worker pool has no container_spec (the pipeline image).
    """
    configured = copy.deepcopy(custom_config)
    job_args = configured[vertex_trainer_executor.TRAINING_ARGS_KEY]
    pools = job_args.get("job_spec", job_args).get("worker_pool_specs", [])
    for number, pool in enumerate(pools):
        if not pool.get("container_spec"):
            raise ValueError(
                f"worker_pool_specs[{number}] of the Vertex training job has no container_spec; "
                "give it the pipeline image (container_spec.image_uri), which holds the trainer"
            )
        pool["container_spec"]["args"] = list(arguments)
    return configured


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
