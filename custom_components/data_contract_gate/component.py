"""DataContractGate: counts and quarantines the rows that break the data contract.

It runs before ExampleGen over the same rows (the same window, source and
tables) because ExampleGen's query leaves those rows out with the same SQL
conditions: training proceeds on the rest, and the run stops only when the
quarantined share exceeds `max_quarantined_share`. Any writer's bad rows are
caught, the server's or one writing straight into BigQuery.
"""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from bandit_core.bigquery.clients import BigQueryEndpoints
from bandit_core.data_contract import DataContract
from custom_components.contract_parameters import CONTRACT_PARAMETERS
from custom_components.data_contract_gate import executor


class QuarantineReport(artifact.Artifact):
    """What one gate run read and quarantined, as custom properties.

    rows_read, rows_quarantined, rows_accepted, quarantined_share,
    rows_copied (new rows in the quarantine table), quarantine_table and one
    `broken_<rule>` count per rule. Custom properties only: Vertex Pipelines
    accepts custom artifact types only with a namespaced name and no declared
    PROPERTIES.
    """

    TYPE_NAME = "mlbandits.QuarantineReport"


class DataContractGateSpec(types.ComponentSpec):
    """The source rows, the contract and the quarantine table in; a QuarantineReport out."""

    PARAMETERS = {
        "source_query": ExecutionParameter(type=str),
        **CONTRACT_PARAMETERS,
        "max_quarantined_share": ExecutionParameter(type=float),
        "bigquery_project": ExecutionParameter(type=str),
        "bigquery_dataset": ExecutionParameter(type=str),
        "quarantine_table": ExecutionParameter(type=str),
        "bigquery_rest_endpoint": ExecutionParameter(type=str, optional=True),
        "bigquery_grpc_endpoint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {"report": ChannelParameter(type=QuarantineReport)}


class DataContractGate(base_component.BaseComponent):
    """Quarantines the rows of `source_query` that break `contract` before ExampleGen reads."""

    SPEC_CLASS = DataContractGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        source_query: str,
        contract: DataContract,
        max_quarantined_share: float,
        endpoints: BigQueryEndpoints,
        dataset: str,
        quarantine_table: str,
    ):
        """
        Args:
          source_query: the rows with their event ids (a
            `bigquery_ingester.queries.build_*_query`).
          contract: what a row may hold.
          max_quarantined_share: the share of rows read that may be
            quarantined before the run stops, in [0, 1].
          endpoints: real BigQuery, or the emulator's endpoints.
          dataset, quarantine_table: where quarantined rows are copied.
        """
        super().__init__(
            spec=DataContractGateSpec(
                source_query=source_query,
                **contract.parameters,
                max_quarantined_share=max_quarantined_share,
                bigquery_project=endpoints.project,
                bigquery_dataset=dataset,
                quarantine_table=quarantine_table,
                bigquery_rest_endpoint=endpoints.rest_endpoint or "",
                bigquery_grpc_endpoint=endpoints.grpc_endpoint or "",
                report=types.Channel(type=QuarantineReport),
            )
        )
