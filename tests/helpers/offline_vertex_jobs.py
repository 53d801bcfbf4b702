"""TFX's Vertex job client with no API connection, for tests that only need the CustomJob it builds."""

from tfx.extensions.google_cloud_ai_platform import training_clients


class OfflineJobClient(training_clients.VertexJobClient):
    """TFX's Vertex job client without its API connection: it only builds the CustomJob."""

    def create_client(self) -> None:
        self._client = None
