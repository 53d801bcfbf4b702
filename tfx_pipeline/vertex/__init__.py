"""Vertex AI: settings, compiling with KubeflowV2DagRunner, submitting and scheduling jobs."""
