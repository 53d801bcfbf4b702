"""Requests to Vertex AI from inside a pipeline step: clients, retries, errors that say what to do.

A step that reports to Vertex AI must ride out a short outage (retries with
back-off for 429, 5xx and dropped connections, up to a deadline) and, when the
request cannot succeed, stop with a message naming the cause and the fix rather
than a bare `google.api_core` traceback.
"""

import dataclasses
from typing import Any, Callable, Optional, Tuple, Type, TypeVar

from google.api_core import client_options
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from requests import exceptions as requests_exceptions

CALL_TIMEOUT_SECONDS = 60.0
DEFAULT_RETRY_SECONDS = 300.0
T = TypeVar("T")
_TRANSIENT = (
    api_exceptions.TooManyRequests,
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.ServiceUnavailable,
    api_exceptions.GatewayTimeout,
    requests_exceptions.ConnectionError,
    requests_exceptions.Timeout,
)


class VertexCallError(RuntimeError):
    """A request to Vertex AI failed for good; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class VertexLocation:
    """A project and region of Vertex AI, and the endpoint that serves them.

    `api_endpoint` empty means Google's regional endpoint; an http:// one is a
    local stand-in and gets anonymous credentials, so real tokens never travel
    in plain text.
    """

    project: str
    region: str
    api_endpoint: str = ""

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def host(self) -> str:
        return self.api_endpoint or f"{self.region}-aiplatform.googleapis.com"

    def rest_url(self, resource_name: str) -> str:
        """The resource's REST URL, as the SDK stores it in metadata (`rest_utils`)."""
        base = self.host if "://" in self.host else f"https://{self.host}"
        return f"{base}/v1/{resource_name}"

    def client(self, client_class: Type[T]) -> T:
        """An `aiplatform_v1` service client over REST for this location."""
        credentials: Optional[auth_credentials.Credentials] = None
        if self.api_endpoint.startswith("http://"):
            credentials = auth_credentials.AnonymousCredentials()
        try:
            return client_class(
                credentials=credentials,
                transport="rest",
                client_options=client_options.ClientOptions(api_endpoint=self.host),
            )
        except auth_exceptions.DefaultCredentialsError as e:
            raise VertexCallError(
                f"no Google Cloud credentials to reach Vertex AI in {self.parent}: run the step "
                "as a service account, or locally `gcloud auth application-default login`"
            ) from e


class VertexCaller:
    """Sends one request at a time, retrying transient failures for up to `retry_seconds`."""

    def __init__(self, location: VertexLocation, retry_seconds: float = DEFAULT_RETRY_SECONDS):
        self.location = location
        self._retry_seconds = retry_seconds
        self._retry = api_retry.Retry(
            predicate=api_retry.if_exception_type(*_TRANSIENT),
            initial=1.0,
            maximum=30.0,
            multiplier=2.0,
            timeout=retry_seconds,
        )

    def call(
        self,
        what: str,
        method: Callable[..., T],
        passed_through: Tuple[Type[Exception], ...] = (),
        **request: Any,
    ) -> T:
        """`method(request=request)`; exceptions in `passed_through` reach the caller as they are.

        Args:
          what: what the request does, for messages ("create experiment run x").
          method: a bound `aiplatform_v1` client method.
          passed_through: answers the caller handles itself, e.g. NotFound or Conflict.
          request: the request's fields.
        """
        try:
            return method(request=request, retry=self._retry, timeout=CALL_TIMEOUT_SECONDS)
        except passed_through:
            raise
        except api_exceptions.PermissionDenied as e:
            raise VertexCallError(
                f"Vertex AI refused to {what} in {self.location.parent}: {e.message} (grant the "
                "service account the pipeline runs as roles/aiplatform.user)"
            ) from e
        except api_exceptions.GoogleAPICallError as e:
            raise VertexCallError(f"Vertex AI refused to {what}: {e.message}") from e
        except api_exceptions.RetryError as e:
            raise VertexCallError(
                f"Vertex AI at {self.location.host} did not answer the request to {what} within "
                f"{self._retry_seconds:g} s ({e.cause}); check vertex.api_endpoint, the network "
                "and https://status.cloud.google.com, then run the pipeline again"
            ) from e
        except requests_exceptions.RequestException as e:
            raise VertexCallError(
                f"cannot reach Vertex AI at {self.location.host} to {what}: {e} (check "
                "vertex.api_endpoint and the network)"
            ) from e
