"""VertexRolloutPusher: deploys a blessed policy to a Vertex endpoint without leaking models."""
