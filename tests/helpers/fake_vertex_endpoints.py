"""The Model and Endpoint half of the fake Vertex control plane, and its long-running operations.

Models are uploaded; endpoints are created, listed, read, updated (traffic
split) and have models deployed and undeployed, as the v1 REST surface of
`aiplatform_v1.ModelServiceClient` and `EndpointServiceClient` does it. Every
body is parsed strictly into its request type and checked with
`vertex_api_rules`. Resources are kept as the REST JSON the API answers with.
Changes take effect when the request is accepted; the operation answering it
is done at once, or after `pending_polls` reads of it, so a client's polling
is exercised.

`:predict` is forwarded as Vertex AI forwards it: the request body, as sent,
is POSTed to the container URL a test registered for the chosen deployed model
(`serve_deployed_model`), chosen by the endpoint's traffic split (in exact
proportion, deterministically); the container's `predictions` come back in a
PredictResponse naming the deployed model and its Model. An endpoint with
nothing deployed, or no traffic, is refused with FAILED_PRECONDITION; a
container's refusal comes back with its status and body, as Vertex returns a
failed prediction (e.g. 400 FAILED_PRECONDITION, "Prediction failed: ...").
"""

from __future__ import annotations

import collections
import datetime
import json
import re
import urllib.error
import urllib.request
from typing import Any, Callable, Counter, Dict, List, Tuple

from google.cloud import aiplatform_v1
from google.protobuf import json_format

from tests.helpers.vertex_api_rules import (
    ApiError,
    check_dedicated_resources,
    check_endpoint,
    check_endpoint_id,
    check_labels,
    check_traffic_split,
    check_uploaded_model,
    failed_precondition,
    invalid,
    parse_body,
    parse_query,
    parse_request_body,
    proto_dict,
    raw_message,
)

_LOCATION = r"projects/[^/]+/locations/[^/]+"
_ENDPOINT = rf"{_LOCATION}/endpoints/[^/:]+"
# Endpoint fields UpdateEndpoint may change, by update-mask path and JSON name.
_UPDATABLE = {
    "display_name": "displayName",
    "description": "description",
    "labels": "labels",
    "traffic_split": "trafficSplit",
}
_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
_API = "type.googleapis.com/google.cloud.aiplatform.v1"
# A container's HTTP status -> the canonical status Vertex answers a failed prediction with.
_PREDICTION_STATUS = {
    400: "FAILED_PRECONDITION",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}
_CONTAINER_TIMEOUT_S = 30.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
Reply = Tuple[int, Dict[str, Any]]
Route = Tuple[str, str, Callable[[str, Dict[str, str], bytes], Reply]]


class FakeEndpointsAndModels:
    """Uploaded models, endpoints and operations by resource name, as REST JSON."""

    def __init__(self) -> None:
        self.models: Dict[str, Dict[str, Any]] = {}
        self.endpoints: Dict[str, Dict[str, Any]] = {}
        self.operations: Dict[str, Dict[str, Any]] = {}
        self.pending_polls = 0
        self._containers: Dict[str, str] = {}
        self._forwarded: Counter = collections.Counter()
        self._polls_left: Dict[str, int] = {}
        self._serial = 0
        self._clock = 0

    def routes(self) -> List[Route]:
        return [
            ("POST", rf"/v1/({_LOCATION})/models:upload", self._upload_model),
            ("GET", rf"/v1/({_LOCATION}/models/[^/:]+)", self._get_model),
            ("POST", rf"/v1/({_LOCATION})/endpoints", self._create_endpoint),
            ("GET", rf"/v1/({_LOCATION})/endpoints", self._list_endpoints),
            ("GET", rf"/v1/({_ENDPOINT})", self._get_endpoint),
            ("PATCH", rf"/v1/({_ENDPOINT})", self._update_endpoint),
            ("POST", rf"/v1/({_ENDPOINT}):deployModel", self._deploy_model),
            ("POST", rf"/v1/({_ENDPOINT}):undeployModel", self._undeploy_model),
            ("POST", rf"/v1/({_ENDPOINT}):predict", self._predict),
            ("GET", rf"/v1/({_LOCATION}/operations/[^/:]+)", self._get_operation),
            # The REST operations client polls through the first binding Vertex lists, /ui/.
            ("GET", rf"/ui/({_LOCATION}/operations/[^/:]+)", self._get_operation),
        ]

    def endpoint_named(self, display_name: str) -> Dict[str, Any]:
        """The one endpoint with this display name."""
        (endpoint,) = [e for e in self.endpoints.values() if e["displayName"] == display_name]
        return endpoint

    def serve_deployed_model(self, deployed_model_id: str, url: str) -> None:
        """Forwards the predictions routed to `deployed_model_id` to `url`, its container's
        predict route (e.g. http://127.0.0.1:PORT/predict)."""
        deployed = [
            d["id"] for e in self.endpoints.values() for d in e.get("deployedModels", [])
        ]
        if deployed_model_id not in deployed:
            raise ValueError(f"no DeployedModel {deployed_model_id!r}; deployed: {deployed}")
        self._containers[deployed_model_id] = url

    # --- models ---------------------------------------------------------------------------------

    def _upload_model(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.UploadModelRequest, {"parent"})
        request = parse_request_body(raw, aiplatform_v1.UploadModelRequest, "parent")
        model = raw_message(request).model
        check_uploaded_model(model)
        name = f"{parent}/models/{self._next_id()}"
        self.models[name] = {
            **proto_dict(model),
            "name": name,
            "versionId": "1",
            "createTime": self._now(),
        }
        return 200, self._operation(
            parent, "UploadModelResponse", {"model": name, "modelVersionId": "1"}
        )

    def _get_model(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetModelRequest, {"name"})
        if name not in self.models:
            raise ApiError(404, f"Model {name} not found.")
        return 200, self.models[name]

    # --- endpoints ------------------------------------------------------------------------------

    def _create_endpoint(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.CreateEndpointRequest, {"parent", "endpoint"})
        endpoint = parse_body(raw, aiplatform_v1.Endpoint)
        check_endpoint(endpoint)
        check_traffic_split(dict(endpoint.traffic_split), (), "Endpoint.traffic_split")
        endpoint_id = request.endpoint_id or self._next_id()
        check_endpoint_id(endpoint_id)
        name = f"{parent}/endpoints/{endpoint_id}"
        if name in self.endpoints:
            raise ApiError(409, f"Endpoint {name} already exists.")
        body = proto_dict(endpoint)
        created = {
            **{k: body[k] for k in ("displayName", "description", "labels") if k in body},
            "name": name,
            "createTime": self._now(),
        }
        self.endpoints[name] = created
        return 200, self._operation(parent, "Endpoint", created)

    def _list_endpoints(self, parent: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.ListEndpointsRequest, {"parent"})
        wanted = re.fullmatch(r'display_name="(.*)"', request.filter)
        if request.filter and not wanted:
            raise invalid(
                f"Unsupported filter {request.filter!r}: this fake filters only by "
                'display_name="<name>".'
            )
        found = [
            e
            for name, e in self.endpoints.items()
            if name.startswith(f"{parent}/") and (not wanted or e["displayName"] == wanted.group(1))
        ]
        return 200, {"endpoints": found} if found else {}

    def _get_endpoint(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.GetEndpointRequest, {"name"})
        return 200, self._endpoint(name)

    def _update_endpoint(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        request = parse_query(query, aiplatform_v1.UpdateEndpointRequest, {"endpoint"})
        update = parse_body(raw, aiplatform_v1.Endpoint)
        endpoint = self._endpoint(name)
        if update.name and update.name != name:
            raise invalid(f"Endpoint.name {update.name!r} does not match the URL's {name!r}.")
        paths = list(request.update_mask.paths)
        if not paths:
            raise invalid("update_mask is required: name the Endpoint fields to update.")
        for path in paths:
            if path not in _UPDATABLE:
                raise invalid(
                    f"update_mask path {path!r} cannot be updated; updatable: "
                    f"{', '.join(sorted(_UPDATABLE))}."
                )
        if "traffic_split" in paths:
            check_traffic_split(
                dict(update.traffic_split), _deployed_ids(endpoint), "Endpoint.traffic_split"
            )
        if "display_name" in paths:
            check_endpoint(update)
        if "labels" in paths:
            check_labels(update.labels)
        changed = proto_dict(update)
        for path, key in _UPDATABLE.items():
            if path in paths:
                endpoint.pop(key, None)
                if changed.get(key):
                    endpoint[key] = changed[key]
        endpoint["updateTime"] = self._now()
        return 200, endpoint

    def _deploy_model(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.DeployModelRequest, {"endpoint"})
        request = raw_message(parse_request_body(raw, aiplatform_v1.DeployModelRequest, "endpoint"))
        endpoint = self._endpoint(name)
        deployed = request.deployed_model
        if not deployed.model:
            raise invalid("DeployModelRequest.deployed_model.model is required.")
        if deployed.model not in self.models:
            raise ApiError(404, f"Model {deployed.model} not found.")
        check_dedicated_resources(deployed)
        split = dict(request.traffic_split)
        check_traffic_split(
            split, [*_deployed_ids(endpoint), "0"], "DeployModelRequest.traffic_split"
        )
        created = {**proto_dict(deployed), "id": self._next_id(), "createTime": self._now()}
        endpoint["deployedModels"] = [*endpoint.get("deployedModels", []), created]
        if split:
            endpoint["trafficSplit"] = {
                (created["id"] if key == "0" else key): share for key, share in split.items()
            }
        return 200, self._operation(
            _location(name), "DeployModelResponse", {"deployedModel": created}
        )

    def _undeploy_model(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.UndeployModelRequest, {"endpoint"})
        request = raw_message(parse_request_body(raw, aiplatform_v1.UndeployModelRequest, "endpoint"))
        endpoint = self._endpoint(name)
        target = request.deployed_model_id
        if not target:
            raise invalid("UndeployModelRequest.deployed_model_id is required.")
        if target not in _deployed_ids(endpoint):
            raise ApiError(404, f"DeployedModel {target!r} not found on Endpoint {name}.")
        others = [d for d in _deployed_ids(endpoint) if d != target]
        traffic = dict(endpoint.get("trafficSplit", {}))
        if request.traffic_split:
            traffic = dict(request.traffic_split)
            check_traffic_split(traffic, others, "UndeployModelRequest.traffic_split")
        if others and traffic.get(target, 0) > 0:
            raise failed_precondition(
                f"DeployedModel {target!r} receives {traffic[target]}% of the Endpoint's "
                "traffic; give its traffic to other deployed models (traffic_split) before "
                "undeploying it."
            )
        # The last model leaves the Endpoint without traffic, whatever its share was.
        traffic = {k: v for k, v in traffic.items() if k != target} if others else {}
        endpoint.pop("trafficSplit", None)
        if traffic:
            endpoint["trafficSplit"] = traffic
        endpoint["deployedModels"] = [d for d in endpoint["deployedModels"] if d["id"] != target]
        if not endpoint["deployedModels"]:
            del endpoint["deployedModels"]
        return 200, self._operation(_location(name), "UndeployModelResponse", {})

    # --- predictions ----------------------------------------------------------------------------

    def _predict(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        parse_query(query, aiplatform_v1.PredictRequest, {"endpoint"})
        request = raw_message(parse_request_body(raw, aiplatform_v1.PredictRequest, "endpoint"))
        endpoint = self._endpoint(name)
        if not request.instances:
            raise invalid("PredictRequest.instances is required: send at least one instance.")
        deployed_id = self._route(name, endpoint)
        if deployed_id not in self._containers:
            raise ApiError(
                503,
                f"DeployedModel {deployed_id!r} has no container in this fake: call "
                "serve_deployed_model(deployed_model_id, url) first.",
                "UNAVAILABLE",
            )
        status, text = _post(self._containers[deployed_id], raw)
        if status != 200:
            raise ApiError(status, text, _PREDICTION_STATUS.get(status, "INTERNAL"))
        (deployed,) = [d for d in endpoint["deployedModels"] if d["id"] == deployed_id]
        answer = {
            "predictions": _container_predictions(text),
            "deployedModelId": deployed_id,
            "model": deployed["model"],
            "modelDisplayName": self.models[deployed["model"]]["displayName"],
            "modelVersionId": self.models[deployed["model"]]["versionId"],
        }
        json_format.ParseDict(answer, aiplatform_v1.PredictResponse.pb()())  # a valid response
        return 200, answer

    def _route(self, name: str, endpoint: Dict[str, Any]) -> str:
        """The deployed model the next prediction goes to, keeping the split's exact shares."""
        if not endpoint.get("deployedModels"):
            raise failed_precondition(
                f"Endpoint {name} has no deployed models: deploy a Model to it (DeployModel) "
                "before sending predictions."
            )
        shares = {d: p for d, p in endpoint.get("trafficSplit", {}).items() if p > 0}
        if not shares:
            raise failed_precondition(
                f"Endpoint {name} sends no traffic to its deployed models: give them a "
                "traffic_split (UpdateEndpoint)."
            )
        chosen = min(shares, key=lambda d: (self._forwarded[d] + 1) / shares[d])
        self._forwarded[chosen] += 1
        return chosen

    # --- operations -----------------------------------------------------------------------------

    def _get_operation(self, name: str, query: Dict[str, str], raw: bytes) -> Reply:
        unknown = sorted(set(query) - {"$alt"})
        if unknown:
            raise invalid(f"Invalid JSON payload received. Unknown name {unknown[0]!r}.")
        if name not in self.operations:
            raise ApiError(404, f"Operation {name} not found.")
        self._polls_left[name] = max(0, self._polls_left[name] - 1)
        return 200, self._operation_json(name)

    def _operation(self, location: str, response_type: str, response: Dict[str, Any]) -> Dict:
        """A new operation answering a request; done unless `pending_polls` says otherwise."""
        name = f"{location}/operations/{self._next_id()}"
        self.operations[name] = {"@type": f"{_API}.{response_type}", **response}
        self._polls_left[name] = self.pending_polls
        return self._operation_json(name)

    def _operation_json(self, name: str) -> Dict[str, Any]:
        if self._polls_left[name] > 0:
            return {"name": name, "done": False}
        return {"name": name, "done": True, "response": self.operations[name]}

    def _endpoint(self, name: str) -> Dict[str, Any]:
        if name not in self.endpoints:
            raise ApiError(404, f"Endpoint {name} not found.")
        return self.endpoints[name]

    def _next_id(self) -> str:
        self._serial += 1
        return str(1000 + self._serial)

    def _now(self) -> str:
        """A clock that advances a second per use, so creation order is unambiguous."""
        self._clock += 1
        return (_EPOCH + datetime.timedelta(seconds=self._clock)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _post(url: str, body: bytes) -> Tuple[int, str]:
    """(HTTP status, body text) of POSTing `body` to a container; 503 if it cannot be reached."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with _NO_PROXY.open(request, timeout=_CONTAINER_TIMEOUT_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return 503, f"the container at {url} cannot be reached: {error}"


def _container_predictions(text: str) -> List[Any]:
    """The `predictions` of a container's answer; Vertex refuses any other shape."""
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("predictions"), list):
        raise ApiError(
            500,
            f"The container's answer is not a JSON object with a predictions array: {text[:200]}",
            "INTERNAL",
        )
    return answer["predictions"]


def _deployed_ids(endpoint: Dict[str, Any]) -> List[str]:
    return [d["id"] for d in endpoint.get("deployedModels", [])]


def _location(resource: str) -> str:
    return "/".join(resource.split("/")[:4])
