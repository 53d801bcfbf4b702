"""BigQueryExampleGen executor for the local BigQuery emulator.

Plugged into the stock BigQueryExampleGen with `custom_executor_spec` only
when an emulator is configured; on Google Cloud the stock executor runs.
The emulator's endpoints arrive in `custom_config`.

Converting one row dict at a time, as the stock executor does, and moving
every row through Beam's partition, shuffle and write made about 1-3k rows/s
here, and one Storage Read session over a large result exceeds the
emulator's message cap. This executor materialises each split's query, plans row ranges sized to the
emulator's Storage Read message cap and runs one Beam element per range
(`range_writer`): Arrow in, vectorised encoding, the stock hash split, files
out. The examples and their splits are the stock ones; files hold them in
table order rather than shuffled.
"""

import json
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from bandit_core.bigquery import clients
from custom_components.bigquery_ingester import hash_split, range_writer, table_reader


def emulator_custom_config(
    endpoints: clients.BigQueryEndpoints, scratch_dataset: str
) -> Dict[str, str]:
    """The custom_config this executor expects."""
    return {
        "project": endpoints.project,
        "rest_endpoint": endpoints.rest_endpoint or "",
        "grpc_endpoint": endpoints.grpc_endpoint or "",
        "scratch_dataset": scratch_dataset,
    }


def _endpoints(config: Dict[str, str]) -> clients.BigQueryEndpoints:
    endpoints = clients.BigQueryEndpoints.from_settings(
        config["project"], config["rest_endpoint"], config["grpc_endpoint"]
    )
    if not endpoints.is_emulator:
        raise ValueError(
            "the emulator ExampleGen executor needs rest_endpoint and grpc_endpoint in "
            "custom_config; on Google Cloud use the stock BigQueryExampleGen executor"
        )
    return endpoints


def _check_payload_format(exec_properties: Dict[str, Any]) -> None:
    payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload and payload != example_gen_pb2.FORMAT_TF_EXAMPLE:
        raise ValueError(
            f"output_data_format={example_gen_pb2.PayloadFormat.Name(payload)} is not supported "
            "by the emulator ExampleGen executor; it writes FORMAT_TF_EXAMPLE only"
        )


def _record_formats(examples: List[types.Artifact], exec_properties: Dict[str, Any]) -> None:
    """Sets the payload and file format properties as the stock executor does."""
    payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
    for artifact in examples:
        if payload:
            examples_utils.set_payload_format(artifact, payload)
        if file_format:
            examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))


def _split_sources(
    input_config: example_gen_pb2.Input, output_config: example_gen_pb2.Output
) -> List[Tuple[str, List[str], Optional[List[int]]]]:
    """(query, output split names, cumulative hash buckets or None) per query to read.

    With an output split config the single input query is hash-split into the
    output splits; without one each input split is written as it is. TFX's
    split-name check refuses an output split config over several input splits.
    """
    names = example_gen_utils.generate_output_split_names(input_config, output_config)
    if output_config.split_config.splits:
        buckets = hash_split.cumulative_buckets(output_config.split_config)
        return [(input_config.splits[0].pattern, names, buckets)]
    return [(split.pattern, [name], None) for split, name in zip(input_config.splits, names)]


class Executor(base_beam_executor.BaseBeamExecutor):
    """Emulator-backed BigQueryExampleGen executor."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        _check_payload_format(exec_properties)
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input()
        )
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output()
        )
        sources = _split_sources(input_config, output_config)
        config = json.loads(exec_properties["custom_config"])
        endpoints = _endpoints(config)
        examples = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact_utils.get_single_instance(examples).split_names = (
            artifact_utils.encode_split_names([n for _, names, _ in sources for n in names])
        )
        client = clients.make_bigquery_client(endpoints)
        scratch: List[table_reader.ScratchTable] = []
        try:
            with self._make_beam_pipeline() as pipeline:
                for index, (query, names, buckets) in enumerate(sources):
                    table = table_reader.materialise(client, query, config["scratch_dataset"])
                    scratch.append(table)
                    split_dirs = [artifact_utils.get_split_uri(examples, n) for n in names]
                    self._write_splits(pipeline, index, endpoints, table, split_dirs, buckets)
        finally:
            for table in scratch:
                client.delete_table(table.table_id, not_found_ok=True)
        _record_formats(examples, exec_properties)

    @staticmethod
    def _write_splits(
        pipeline: beam.Pipeline,
        index: int,
        endpoints: clients.BigQueryEndpoints,
        table: table_reader.ScratchTable,
        split_dirs: List[str],
        buckets: Optional[List[int]],
    ) -> None:
        """Adds the read-encode-write step of one query; an empty result writes empty files."""
        with clients.closing_read_client(endpoints) as read_client:
            ranges = table_reader.plan_ranges(read_client, table)
        if not ranges:
            for split_dir in split_dirs:
                range_writer.write_records(range_writer.range_file(split_dir, 0, 1), [])
            return
        _ = (
            pipeline
            | f"RowRanges[{index}]" >> beam.Create(list(enumerate(ranges)))
            | f"WriteExamples[{index}]"
            >> beam.ParDo(
                range_writer.WriteRangeExamples(endpoints, table, split_dirs, buckets, len(ranges))
            )
        )
