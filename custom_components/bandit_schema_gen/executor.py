"""Writes the curated schema where SchemaGen would write an inferred one."""

import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.schema_gen.executor import DEFAULT_FILE_NAME
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from bandit_core import data_contract
from custom_components.bandit_schema_gen.schema import build_schema


class Executor(base_executor.BaseExecutor):
    """Builds the schema of the data contract its parameters describe and writes schema.pbtxt."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        schema = build_schema(data_contract.DataContract.from_parameters(exec_properties))
        output = artifact_utils.get_single_instance(output_dict["schema"])
        io_utils.write_pbtxt_file(os.path.join(output.uri, DEFAULT_FILE_NAME), schema)
