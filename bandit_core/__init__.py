"""The bottom layer: what every other package shares, importing nothing of ours.

Column names, agent names, the policy sidecar and saved-policy loading, the
linear-policy math, logged-example reading, BigQuery clients and tables, and
the settings error. Everything above depends on it; it depends on nothing above.
"""
