"""Local runs: LocalDagRunner over SQLite ML Metadata and the BigQuery emulator lifecycle."""
