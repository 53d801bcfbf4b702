"""The closed feedback loop of the demo: serve, simulate, trigger, retrain, reload."""
