"""Ingester: BigQueryExampleGen, its emulator executor and the queries it runs."""
