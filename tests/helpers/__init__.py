"""Helpers shared by the tests: a policy factory and a fake Vertex AI server."""
