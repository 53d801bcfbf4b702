"""Writes the curated schema where SchemaGen would write an inferred one."""

import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.schema_gen.executor import DEFAULT_FILE_NAME
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from custom_components.bandit_schema_gen.schema import build_bandit_schema, build_per_arm_schema


class Executor(base_executor.BaseExecutor):
    """Builds the schema from execution parameters and writes schema.pbtxt."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        bounds = dict(
            reward_min=exec_properties["reward_min"],
            reward_max=exec_properties["reward_max"],
            min_propensity=exec_properties["min_propensity"],
        )
        arm_dim = exec_properties.get("arm_dim") or 0
        if arm_dim:
            schema = build_per_arm_schema(
                global_dim=exec_properties["observation_dim"],
                arm_dim=arm_dim,
                num_candidates=exec_properties["num_actions"],
                **bounds,
            )
        else:
            schema = build_bandit_schema(
                observation_dim=exec_properties["observation_dim"],
                num_actions=exec_properties["num_actions"],
                **bounds,
            )
        output = artifact_utils.get_single_instance(output_dict["schema"])
        io_utils.write_pbtxt_file(os.path.join(output.uri, DEFAULT_FILE_NAME), schema)
