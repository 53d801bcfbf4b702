"""Lineage over ML Metadata: from a served prediction back to its data and code."""
