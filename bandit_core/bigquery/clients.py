"""BigQuery clients for either real BigQuery or the local emulator, chosen by one value object."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, Optional

import grpc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryReadClient
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
    BigQueryReadGrpcTransport,
)

# A proxy taken from the environment must never sit between us and the local emulator.
_DIRECT_CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


@dataclasses.dataclass(frozen=True)
class BigQueryEndpoints:
    """Where BigQuery lives: real Google endpoints when both endpoints are None."""

    project: str
    rest_endpoint: Optional[str] = None
    grpc_endpoint: Optional[str] = None

    @classmethod
    def from_settings(
        cls, project: str, rest_endpoint: str, grpc_endpoint: str
    ) -> "BigQueryEndpoints":
        """From component parameters, where an empty string means real BigQuery."""
        return cls(project, rest_endpoint or None, grpc_endpoint or None)

    @property
    def is_emulator(self) -> bool:
        return self.rest_endpoint is not None or self.grpc_endpoint is not None


def make_bigquery_client(endpoints: BigQueryEndpoints) -> bigquery.Client:
    """REST client; the emulator accepts anonymous credentials, real BigQuery uses ADC."""
    if endpoints.rest_endpoint is None:
        return bigquery.Client(project=endpoints.project)
    return bigquery.Client(
        project=endpoints.project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoints.rest_endpoint),
    )


def make_read_client(endpoints: BigQueryEndpoints) -> BigQueryReadClient:
    """Storage Read API client; the emulator speaks plaintext gRPC."""
    if endpoints.grpc_endpoint is None:
        return BigQueryReadClient()
    channel = grpc.insecure_channel(endpoints.grpc_endpoint, options=_DIRECT_CHANNEL_OPTIONS)
    return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))


@contextlib.contextmanager
def closing_read_client(endpoints: BigQueryEndpoints) -> Iterator[BigQueryReadClient]:
    """A Storage Read API client whose channel is closed on exit."""
    client = make_read_client(endpoints)
    try:
        yield client
    finally:
        client.transport.close()
