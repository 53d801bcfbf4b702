"""A Vertex AI endpoint as the Simulator's prediction service, through aiplatform_v1's REST client.

Vertex AI forwards only `:predict` to the serving container, so both the
prediction and its reward go through it: the reward as a reward instance
(`{"event_id": ..., "reward": ...}`, see `serving.request_schema`), answered
with what became of it. An `http://` api_endpoint is a local stand-in and gets
anonymous credentials; any other gets the application default credentials.
"""

import asyncio
import re
from typing import Any, Dict, List, Optional

from google.api_core import client_options
from google.api_core import exceptions as api_exceptions
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from requests import exceptions as requests_exceptions

from simulation.simulator import ServiceError

# An endpoint's id: Vertex's own are long numbers; a chosen one is lowercase letters,
# digits and hyphens.
ENDPOINT_ID = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", re.ASCII)
ENDPOINT_NAME = re.compile(
    rf"projects/[^/:]+/locations/(?P<region>[a-z]+-[a-z]+[0-9]+)/endpoints/{ENDPOINT_ID.pattern}",
    re.ASCII,
)
ACCEPTED = "accepted"


def endpoint_problem(text: str) -> Optional[str]:
    """What is wrong with an endpoint resource name or bare endpoint id, or None."""
    if ENDPOINT_NAME.fullmatch(text) or ("/" not in text and ENDPOINT_ID.fullmatch(text)):
        return None
    return (
        f"{text!r} is neither an endpoint resource name nor an endpoint id: write "
        "projects/PROJECT/locations/REGION/endpoints/ENDPOINT_ID, or the id alone with "
        "vertex.project and vertex.region set (`gcloud ai endpoints list --region REGION` "
        "shows the ids)"
    )


def region_of(endpoint: str) -> str:
    """The region of an endpoint resource name, whose API host serves it."""
    return ENDPOINT_NAME.fullmatch(endpoint).group("region")


class VertexEndpoint:
    """Predictions and rewards through one endpoint's `:predict`, in worker threads."""

    def __init__(self, endpoint: str, api_endpoint: str) -> None:
        """`endpoint` is the resource name; `api_endpoint` the Vertex API host (or http:// URL)."""
        self.endpoint = endpoint
        self.api_endpoint = api_endpoint
        self._client: Optional[aiplatform_v1.PredictionServiceClient] = None

    async def __aenter__(self) -> "VertexEndpoint":
        try:
            self._client = aiplatform_v1.PredictionServiceClient(
                credentials=_credentials(self.api_endpoint),
                transport="rest",
                client_options=client_options.ClientOptions(api_endpoint=self.api_endpoint),
            )
        except auth_exceptions.DefaultCredentialsError as error:
            raise ServiceError(
                "no Google Cloud credentials to call the Vertex AI endpoint: run "
                "`gcloud auth application-default login`"
            ) from error
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._client.transport.close()

    async def predict(self, instance: Dict[str, Any]) -> Dict[str, Any]:
        (prediction,) = await self._predict("predict", [instance])
        return prediction

    async def reward(self, event_id: str, reward: float) -> None:
        (outcome,) = await self._predict("reward", [{"event_id": event_id, "reward": reward}])
        if outcome.get("status") != ACCEPTED:
            raise ServiceError(f"reward of {event_id} not accepted: {outcome}")

    async def _predict(self, what: str, instances: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The predictions answering `instances`, as the JSON the container wrote."""
        try:
            response = await asyncio.to_thread(
                self._client.predict, endpoint=self.endpoint, instances=instances
            )
        except api_exceptions.GoogleAPICallError as error:
            raise ServiceError(f"{what} through {self.endpoint}: {error}") from error
        except requests_exceptions.RequestException as error:
            raise ServiceError(
                f"{what}: cannot reach Vertex AI at {self.api_endpoint} ({error}); check "
                "vertex.api_endpoint and the network"
            ) from error
        answer = json_format.MessageToDict(aiplatform_v1.PredictResponse.pb(response))
        predictions = [_whole_numbers_as_ints(p) for p in answer.get("predictions", [])]
        if len(predictions) != len(instances):
            raise ServiceError(
                f"{what} through {self.endpoint}: {len(instances)} instances answered with "
                f"{len(predictions)} predictions: {answer}"
            )
        return predictions


def _credentials(api_endpoint: str) -> Optional[auth_credentials.Credentials]:
    """Anonymous for a plaintext local stand-in, which must not receive real tokens."""
    if api_endpoint.startswith("http://"):
        return auth_credentials.AnonymousCredentials()
    return None


def _whole_numbers_as_ints(value: Any) -> Any:
    """JSON as the container wrote it: protobuf's Value holds every number as a double.

    The container's integers (actions, movie ids) come back as 3.0; this makes
    them 3 again. A float the container wrote as 1.0 becomes 1, which is equal.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole_numbers_as_ints(item) for key, item in value.items()}
    return value
