"""BigQuery endpoints, clients, table schemas and the settings that name them."""
