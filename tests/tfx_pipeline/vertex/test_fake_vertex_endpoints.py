"""The fake control plane refuses model and endpoint requests Vertex would refuse.

Raw JSON over HTTP, the way a client with a bug would send it; the last test
goes through Google's REST client, which must raise what it raises against Vertex.
"""

from typing import Dict, Tuple

import pytest
from google.api_core import client_options, exceptions
from google.auth import credentials as auth_credentials
from google.cloud import aiplatform_v1

from tests.helpers.fake_vertex_server import FakeVertexServer
from tests.tfx_pipeline.vertex.test_fake_vertex_server import PARENT, assert_refused, send

IMAGE = "europe-west4-docker.pkg.dev/my-proj/mlbandits/serving:1.0"
RESOURCES = {"machineSpec": {"machineType": "n1-standard-2"}, "minReplicaCount": 1}


@pytest.fixture
def fake():
    with FakeVertexServer() as server:
        yield server


def upload(fake: FakeVertexServer, number: int) -> str:
    model = {
        "displayName": f"bandits-{number}",
        "artifactUri": f"gs://my-bucket/pushed/{number}",
        "containerSpec": {"imageUri": IMAGE},
    }
    status, operation = send(fake, "POST", f"/v1/{PARENT}/models:upload", {"model": model})
    assert status == 200, operation
    return operation["response"]["model"]


def deploy(fake: FakeVertexServer, endpoint: str, model: str, split: Dict[str, int]) -> str:
    body = {"deployedModel": {"model": model, "dedicatedResources": RESOURCES}}
    status, operation = send(
        fake, "POST", f"/v1/{endpoint}:deployModel", {**body, "trafficSplit": split}
    )
    assert status == 200, operation
    return operation["response"]["deployedModel"]["id"]


@pytest.fixture
def two_deployed(fake) -> Tuple[str, str, str]:
    """(endpoint, older deployed id at 0%, newer deployed id at 100%)."""
    status, operation = send(fake, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "bandits"})
    assert status == 200, operation
    endpoint = operation["response"]["name"]
    older = deploy(fake, endpoint, upload(fake, 1), {"0": 100})
    newer = deploy(fake, endpoint, upload(fake, 2), {"0": 100})
    return endpoint, older, newer


def test_deploying_with_a_split_sets_the_endpoints_traffic(fake, two_deployed):
    endpoint, older, newer = two_deployed
    status, body = send(fake, "GET", f"/v1/{endpoint}")
    assert status == 200
    assert body["trafficSplit"] == {newer: 100}
    assert [d["id"] for d in body["deployedModels"]] == [older, newer]


@pytest.mark.parametrize(
    "split, expected",
    [
        ({"0": 50, "x": 50}, "DeployedModel 'x', which is not deployed"),
        ({"0": 60}, "must add up to 100 (or be empty for no traffic); it adds up to 60"),
        ({"0": 120, "{older}": -20}, "each value is 0 to 100"),
    ],
)
def test_a_deploy_whose_split_vertex_would_refuse_is_refused(fake, two_deployed, split, expected):
    endpoint, older, _ = two_deployed
    split = {key.format(older=older): value for key, value in split.items()}
    body = {"deployedModel": {"model": upload(fake, 3), "dedicatedResources": RESOURCES}}
    answer = send(fake, "POST", f"/v1/{endpoint}:deployModel", {**body, "trafficSplit": split})
    assert_refused(answer, 400, "INVALID_ARGUMENT", expected)
    assert len(fake.prediction.endpoint_named("bandits")["deployedModels"]) == 2


@pytest.mark.parametrize(
    "deployed_model, expected, code",
    [
        ({"model": f"{PARENT}/models/404", "dedicatedResources": RESOURCES}, "not found", 404),
        ({"model": "{model}"}, "dedicated_resources is required", 400),
        (
            {"model": "{model}", "dedicatedResources": {"machineSpec": {}, "minReplicaCount": 1}},
            "machine_type is required",
            400,
        ),
        (
            {"model": "{model}", "dedicatedResources": {**RESOURCES, "minReplicaCount": 0}},
            "min_replica_count must be at least 1",
            400,
        ),
        (
            {"model": "{model}", "dedicatedResources": {**RESOURCES, "maxReplicaCount": 0.5}},
            "Failed to parse maxReplicaCount",
            400,
        ),
        ({"modle": "{model}"}, 'has no field named "modle"', 400),
    ],
    ids=["unknown-model", "no-resources", "no-machine", "no-replicas", "wrong-type", "misspelled"],
)
def test_a_malformed_deploy_is_refused(fake, two_deployed, deployed_model, expected, code):
    endpoint = two_deployed[0]
    model = upload(fake, 3)
    body = {
        k: v.format(model=model) if isinstance(v, str) else v for k, v in deployed_model.items()
    }
    answer = send(fake, "POST", f"/v1/{endpoint}:deployModel", {"deployedModel": body})
    assert_refused(answer, code, "NOT_FOUND" if code == 404 else "INVALID_ARGUMENT", expected)


def test_the_endpoint_is_bound_by_the_path_not_the_body(fake, two_deployed):
    endpoint = two_deployed[0]
    answer = send(fake, "POST", f"/v1/{endpoint}:undeployModel", {"endpoint": endpoint})
    assert_refused(answer, 400, "INVALID_ARGUMENT", 'Unknown name "endpoint"')


def test_the_model_holding_traffic_is_not_undeployed_while_others_remain(fake, two_deployed):
    endpoint, older, newer = two_deployed
    answer = send(fake, "POST", f"/v1/{endpoint}:undeployModel", {"deployedModelId": newer})
    assert_refused(answer, 400, "FAILED_PRECONDITION", f"'{newer}' receives 100%")
    moved = {"deployedModelId": newer, "trafficSplit": {older: 100}}
    assert send(fake, "POST", f"/v1/{endpoint}:undeployModel", moved)[0] == 200
    assert fake.prediction.endpoint_named("bandits")["trafficSplit"] == {older: 100}


def test_a_split_that_still_routes_to_the_undeployed_model_is_refused(fake, two_deployed):
    endpoint, older, newer = two_deployed
    body = {"deployedModelId": newer, "trafficSplit": {older: 50, newer: 50}}
    answer = send(fake, "POST", f"/v1/{endpoint}:undeployModel", body)
    assert_refused(answer, 400, "INVALID_ARGUMENT", f"DeployedModel '{newer}', which is not")


def test_the_last_model_is_undeployed_with_its_traffic(fake, two_deployed):
    endpoint, older, newer = two_deployed
    assert send(fake, "POST", f"/v1/{endpoint}:undeployModel", {"deployedModelId": older})[0] == 200
    assert send(fake, "POST", f"/v1/{endpoint}:undeployModel", {"deployedModelId": newer})[0] == 200
    status, body = send(fake, "GET", f"/v1/{endpoint}")
    assert status == 200 and "trafficSplit" not in body and "deployedModels" not in body


def test_an_unknown_deployed_model_endpoint_or_operation_is_not_found(fake, two_deployed):
    endpoint = two_deployed[0]
    answer = send(fake, "POST", f"/v1/{endpoint}:undeployModel", {"deployedModelId": "999"})
    assert_refused(answer, 404, "NOT_FOUND", "DeployedModel '999' not found")
    assert_refused(send(fake, "GET", f"/v1/{PARENT}/endpoints/9"), 404, "NOT_FOUND", "not found")
    answer = send(fake, "GET", f"/v1/{PARENT}/operations/9")
    assert_refused(answer, 404, "NOT_FOUND", "Operation")


@pytest.mark.parametrize(
    "query, body, expected",
    [
        ({"updateMask": "trafficSplit"}, {"trafficSplit": {"{older}": 70}}, "adds up to 70"),
        ({"updateMask": "trafficSplit"}, {"trafficSplit": {"7": 100}}, "DeployedModel '7'"),
        ({}, {"trafficSplit": {"{older}": 100}}, "update_mask is required"),
        ({"updateMask": "deployedModels"}, {}, "'deployed_models' cannot be updated"),
        ({"updateMask": "trafficSplit"}, {"trafficSplitt": {}}, 'no field named "trafficSplitt"'),
    ],
    ids=["not-100", "unknown-id", "no-mask", "output-only", "misspelled"],
)
def test_a_traffic_update_vertex_would_refuse_is_refused(fake, two_deployed, query, body, expected):
    endpoint, older, newer = two_deployed
    body = {k: {i.format(older=older): v for i, v in value.items()} for k, value in body.items()}
    answer = send(fake, "PATCH", f"/v1/{endpoint}", body, query=query)
    assert_refused(answer, 400, "INVALID_ARGUMENT", expected)
    assert fake.prediction.endpoint_named("bandits")["trafficSplit"] == {newer: 100}


def test_a_valid_traffic_update_moves_the_traffic(fake, two_deployed):
    endpoint, older, newer = two_deployed
    split = {"trafficSplit": {older: 80, newer: 20}}
    status, body = send(
        fake, "PATCH", f"/v1/{endpoint}", split, query={"updateMask": "trafficSplit"}
    )
    assert (status, body["trafficSplit"]) == (200, {older: 80, newer: 20})


@pytest.mark.parametrize(
    "model, expected",
    [
        ({"artifactUri": "/tmp/model", "containerSpec": {"imageUri": IMAGE}}, "Cloud Storage"),
        ({"artifactUri": "gs://b/m"}, "container_spec.image_uri is required"),
        ({"displayName": "", "containerSpec": {"imageUri": IMAGE}}, "display_name is required"),
        ({"containerSpec": {"image": IMAGE}}, 'no field named "image"'),
    ],
    ids=["local-artifact", "no-image", "no-name", "misspelled"],
)
def test_a_malformed_model_upload_is_refused(fake, model, expected):
    body = {"model": {"displayName": "bandits-1", **model}}
    answer = send(fake, "POST", f"/v1/{PARENT}/models:upload", body)
    assert_refused(answer, 400, "INVALID_ARGUMENT", expected)
    assert fake.prediction.models == {}


@pytest.mark.parametrize(
    "body, query, code, expected",
    [
        ({}, {}, 400, "Endpoint.display_name is required"),
        ({"displayName": "x"}, {"endpointId": "Bandits"}, 400, "Invalid endpoint id 'Bandits'"),
        ({"displayName": "x"}, {"endpointId": "0123"}, 400, "Invalid endpoint id '0123'"),
        ({"displayName": "x", "trafficSplit": {"1": 100}}, {}, 400, "not deployed"),
    ],
)
def test_a_malformed_endpoint_is_refused(fake, body, query, code, expected):
    answer = send(fake, "POST", f"/v1/{PARENT}/endpoints", body, query=query)
    assert_refused(answer, code, "INVALID_ARGUMENT", expected)


def test_an_endpoint_id_in_use_is_a_conflict(fake):
    query = {"endpointId": "bandits"}
    assert (
        send(fake, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "a"}, query=query)[0] == 200
    )
    again = send(fake, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "b"}, query=query)
    assert_refused(again, 409, "ALREADY_EXISTS", "endpoints/bandits already exists")


def test_endpoints_are_listed_by_display_name_only(fake):
    send(fake, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "bandits"})
    status, body = send(
        fake, "GET", f"/v1/{PARENT}/endpoints", query={"filter": 'display_name="bandits"'}
    )
    assert status == 200 and [e["displayName"] for e in body["endpoints"]] == ["bandits"]
    assert send(fake, "GET", f"/v1/{PARENT}/endpoints", query={"filter": 'display_name="x"'}) == (
        200,
        {},
    )
    answer = send(fake, "GET", f"/v1/{PARENT}/endpoints", query={"filter": "labels.a=b"})
    assert_refused(answer, 400, "INVALID_ARGUMENT", "Unsupported filter")


def test_the_rest_client_raises_what_it_raises_against_vertex(fake, two_deployed):
    endpoint, _, newer = two_deployed
    client = aiplatform_v1.EndpointServiceClient(
        credentials=auth_credentials.AnonymousCredentials(),
        transport="rest",
        client_options=client_options.ClientOptions(api_endpoint=fake.endpoint),
    )
    with pytest.raises(exceptions.BadRequest, match="receives 100%"):
        client.undeploy_model(endpoint=endpoint, deployed_model_id=newer)
    with pytest.raises(exceptions.NotFound, match="'999' not found"):
        client.undeploy_model(endpoint=endpoint, deployed_model_id="999")
