"""Reports: run summaries from ML Metadata, policy values, the agent and loop reports."""
