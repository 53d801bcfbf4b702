"""The Ingester: TFX's BigQueryExampleGen, with the emulator-safe executor when local.

On Google Cloud the stock executor reads BigQuery; against the local emulator
the same component runs `emulator_executor`, which never lets Beam's BigQuery
IO near the emulator (see that module). Either way the component, its query
and its split are the same, so lineage and downstream steps cannot tell.
"""

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_big_query.example_gen.component import BigQueryExampleGen

from bandit_core import columns
from bandit_core.bigquery.clients import BigQueryEndpoints
from custom_components.bigquery_ingester import emulator_executor


def bigquery_example_gen(
    query: str,
    train_buckets: int,
    eval_buckets: int,
    endpoints: BigQueryEndpoints,
    scratch_dataset: str,
) -> BigQueryExampleGen:
    """BigQueryExampleGen over `query`, hash-split into train and eval buckets.

    Args:
      query: the SELECT whose rows become examples (see `queries`).
      train_buckets: hash buckets of the train split.
      eval_buckets: hash buckets of the eval split.
      endpoints: real BigQuery, or the emulator's endpoints.
      scratch_dataset: where the emulator executor materialises the query.
    """
    output_config = tfx.proto.Output(
        split_config=tfx.proto.SplitConfig(
            splits=[
                tfx.proto.SplitConfig.Split(name="train", hash_buckets=train_buckets),
                tfx.proto.SplitConfig.Split(name="eval", hash_buckets=eval_buckets),
            ]
        )
    )
    return _example_gen(endpoints, scratch_dataset, query=query, output_config=output_config)


ITEMS_EXAMPLE_GEN_ID = "ItemsExampleGen"


def bigquery_items_gen(
    query: str, endpoints: BigQueryEndpoints, scratch_dataset: str
) -> BigQueryExampleGen:
    """BigQueryExampleGen over the items table: one `items` split, the movie catalogue.

    A second ExampleGen rather than a read inside the trainer, so lineage
    records which catalogue each per-arm policy was built with.
    """
    input_config = tfx.proto.Input(
        splits=[tfx.proto.Input.Split(name=columns.ITEMS_SPLIT, pattern=query)]
    )
    # An empty output config keeps the input's split; the default would hash
    # a single input split into train and eval.
    return _example_gen(
        endpoints, scratch_dataset, input_config=input_config, output_config=tfx.proto.Output()
    ).with_id(ITEMS_EXAMPLE_GEN_ID)


def _example_gen(
    endpoints: BigQueryEndpoints, scratch_dataset: str, **arguments
) -> BigQueryExampleGen:
    """The stock component; against the emulator, with the emulator executor."""
    if not endpoints.is_emulator:
        return BigQueryExampleGen(**arguments)
    return BigQueryExampleGen(
        custom_executor_spec=executor_spec.BeamExecutorSpec(emulator_executor.Executor),
        custom_config=emulator_executor.emulator_custom_config(endpoints, scratch_dataset),
        **arguments,
    )
