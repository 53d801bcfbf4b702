"""BigQueryExampleGen executor for the local BigQuery emulator.

Plugged into the stock BigQueryExampleGen with `custom_executor_spec` only
when an emulator is configured; on Google Cloud the stock executor runs.
The emulator's endpoints arrive in `custom_config`.
"""

import json
from typing import Any, Dict

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.extensions.google_cloud_big_query import utils

from bandit_core.bigquery import clients
from custom_components.bigquery_ingester import table_reader


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


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _EmulatorQueryToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    """Reads the split's query from the emulator and converts rows like TFX does."""
    config = json.loads(exec_properties["custom_config"])
    endpoints = clients.BigQueryEndpoints.from_settings(
        config["project"], config["rest_endpoint"], config["grpc_endpoint"]
    )
    if not endpoints.is_emulator:
        raise ValueError(
            "the emulator ExampleGen executor needs rest_endpoint and grpc_endpoint in "
            "custom_config; on Google Cloud use the stock BigQueryExampleGen executor"
        )
    field_types, rows = table_reader.read_query_rows(
        endpoints, split_pattern, config["scratch_dataset"]
    )
    return (
        pipeline
        | "CreateRows" >> beam.Create(rows, reshuffle=False)
        | "ToTFExample" >> beam.Map(lambda row: utils.row_to_example(field_types, row))
    )


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Emulator-backed BigQueryExampleGen executor."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _EmulatorQueryToExample
