"""The fake's Vertex AI Experiments routes refuse what Google would refuse, with Google's statuses.

Malformed requests go over HTTP as raw JSON, the way a client with a bug would
send them, so the writer's tests can trust that what the fake accepts the API accepts.
"""

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Tuple

import pytest

from tests.helpers.fake_vertex_server import FakeVertexServer

STORE = "projects/my-proj/locations/us-central1/metadataStores/default"
TENSORBOARD = "projects/my-proj/locations/us-central1/tensorboards/42"
TB_EXPERIMENT = f"{TENSORBOARD}/experiments/exp-1"
TB_RUN = f"{TB_EXPERIMENT}/runs/run-1"


def send(
    fake: FakeVertexServer, method: str, path: str, body: Optional[Any] = None, query: str = ""
) -> Tuple[int, Dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{fake.endpoint}/v1/{path}{'?' + query if query else ''}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def fake():
    """A TensorBoard with experiment exp-1, run run-1 and one scalar series; contexts a and b."""
    with FakeVertexServer() as server:
        server.experiments.add_tensorboard(TENSORBOARD)
        for path, body, query in (
            (f"{STORE}/contexts", {"schemaTitle": "system.Experiment"}, "contextId=ctx-a"),
            (f"{STORE}/contexts", {"schemaTitle": "system.ExperimentRun"}, "contextId=ctx-b"),
            (f"{TENSORBOARD}/experiments", {"displayName": "e"}, "tensorboardExperimentId=exp-1"),
            (f"{TB_EXPERIMENT}/runs", {"displayName": "run-1"}, "tensorboardRunId=run-1"),
            (
                f"{TB_RUN}/timeSeries",
                {"displayName": "loss", "valueType": "SCALAR"},
                "tensorboardTimeSeriesId=loss",
            ),
        ):
            assert send(server, "POST", path, body, query)[0] == 200
        yield server


def _points(count: int, kind: str = "scalar") -> list:
    value = {"scalar": {"value": 1.0}, "tensor": {"value": "AA=="}}[kind]
    return [{"step": str(step), kind: value} for step in range(count)]


@pytest.mark.parametrize(
    "method, path, body, query, code, status, expected",
    [
        (
            "POST", f"{STORE}/contexts", {"schemaTitle": "x", "colour": "red"}, "contextId=ctx-c",
            400, "INVALID_ARGUMENT", 'no field named "colour"',
        ),
        (
            "POST", f"{STORE}/contexts", {"schemaTitle": "x"}, "contextId=Ctx_C",
            400, "INVALID_ARGUMENT", "Invalid context_id 'Ctx_C'",
        ),
        (
            "POST", f"{STORE}/contexts", {"schemaTitle": "x"}, "contextId=ctx-a",
            409, "ALREADY_EXISTS", "already exists",
        ),
        (
            "POST", f"{STORE}/contexts", {"metadata": {"big": "x" * 205_000}}, "contextId=ctx-c",
            400, "INVALID_ARGUMENT", "the limit is 204800",
        ),
        (
            "POST", "projects/my-proj/locations/us-central1/metadataStores/other/contexts",
            {"schemaTitle": "x"}, "contextId=ctx-c", 404, "NOT_FOUND", "MetadataStore",
        ),
        ("GET", f"{STORE}/contexts/nope", None, "", 404, "NOT_FOUND", "not found"),
        (
            "PATCH", f"{STORE}/contexts/ctx-a", {"metadata": {}}, "updateMask=schemaTitle",
            400, "INVALID_ARGUMENT", "cannot be updated",
        ),
        (
            "PATCH", f"{STORE}/contexts/ctx-a", {"name": f"{STORE}/contexts/ctx-b"}, "",
            400, "INVALID_ARGUMENT", "does not match the URL",
        ),
        (
            "POST", f"{STORE}/contexts/ctx-a:addContextChildren",
            {"context": f"{STORE}/contexts/ctx-a", "childContexts": []}, "",
            400, "INVALID_ARGUMENT", "bound by the URL",
        ),
        (
            "POST", f"{STORE}/contexts/ctx-a:addContextChildren",
            {"childContexts": [f"{STORE}/contexts/ctx-a"]}, "",
            400, "INVALID_ARGUMENT", "would create a cycle",
        ),
        (
            "POST", f"{STORE}/contexts/ctx-a:addContextArtifactsAndExecutions",
            {"artifacts": [f"{STORE}/artifacts/none"]}, "", 404, "NOT_FOUND", "Artifact",
        ),
        (
            "POST", f"{STORE}/artifacts", {"schemaTitle": "x"}, "artifactId=ab",
            400, "INVALID_ARGUMENT", "Invalid artifact_id 'ab'",
        ),
        (
            "GET", "projects/my-proj/locations/us-central1/tensorboards/7", None, "",
            404, "NOT_FOUND", "Tensorboard",
        ),
        (
            "POST", f"{TENSORBOARD}/experiments", {"displayName": "e"}, "",
            400, "INVALID_ARGUMENT", "Invalid tensorboard_experiment_id ''",
        ),
        (
            "POST", f"{TB_EXPERIMENT}/runs", {}, "tensorboardRunId=run-2",
            400, "INVALID_ARGUMENT", "TensorboardRun.display_name is required",
        ),
        (
            "POST", f"{TB_EXPERIMENT}/runs", {"displayName": "run-1"}, "tensorboardRunId=run-2",
            409, "ALREADY_EXISTS", "named 'run-1' already exists",
        ),
        (
            "POST", f"{TB_RUN}/timeSeries", {"displayName": "acc"}, "",
            400, "INVALID_ARGUMENT", "value_type is required",
        ),
        (
            "POST", f"{TB_RUN}/timeSeries", {"displayName": "loss", "valueType": "SCALAR"}, "",
            409, "ALREADY_EXISTS", "named 'loss' already exists",
        ),
        (
            "GET", f"{TB_RUN}/timeSeries", None, "filter=display_name%3D%22loss%22",
            400, "INVALID_ARGUMENT", "filter is not served",
        ),
        (
            "POST", f"{TB_RUN}:write",
            {"timeSeriesData": [{"tensorboardTimeSeriesId": "loss", "valueType": "SCALAR",
                                 "values": _points(5001)}]},
            "", 400, "INVALID_ARGUMENT", "5001 data points in one request; the limit is 5000",
        ),
        (
            "POST", f"{TB_RUN}:write",
            {"timeSeriesData": [{"tensorboardTimeSeriesId": "loss", "valueType": "SCALAR",
                                 "values": _points(1, "tensor")}]},
            "", 400, "INVALID_ARGUMENT", "a SCALAR series holds scalar",
        ),
        (
            "POST", f"{TB_RUN}:write",
            {"timeSeriesData": [{"tensorboardTimeSeriesId": "acc", "valueType": "SCALAR",
                                 "values": _points(1)}]},
            "", 404, "NOT_FOUND", "TensorboardTimeSeries",
        ),
        (
            "POST", f"{TB_EXPERIMENT}:write",
            {"writeRunDataRequests": [{"tensorboardRun": f"{TENSORBOARD}/experiments/x/runs/r",
                                       "timeSeriesData": []}]},
            "", 400, "INVALID_ARGUMENT", "is not a run of",
        ),
    ],
)
def test_malformed_or_conflicting_requests_are_refused(
    fake, method, path, body, query, code, status, expected
):
    answer_code, answer = send(fake, method, path, body, query)
    assert (answer_code, answer["error"]["status"]) == (code, status)
    assert expected in answer["error"]["message"]


def test_a_refused_write_stores_nothing_and_a_rewritten_step_overwrites(fake):
    good = {"tensorboardTimeSeriesId": "loss", "valueType": "SCALAR", "values": _points(2)}
    bad = {"tensorboardTimeSeriesId": "acc", "valueType": "SCALAR", "values": _points(1)}
    assert send(fake, "POST", f"{TB_RUN}:write", {"timeSeriesData": [good, bad]})[0] == 404
    assert fake.experiments.scalars(TB_RUN) == {"loss": []}

    again = {**good, "values": [{"step": "1", "scalar": {"value": 7.5}}]}
    for data in (good, again):
        assert send(fake, "POST", f"{TB_RUN}:write", {"timeSeriesData": [data]}) == (200, {})
    assert fake.experiments.scalars(TB_RUN) == {"loss": [(0, 1.0), (1, 7.5)]}


def test_adding_a_child_twice_is_skipped_and_the_child_names_its_parent(fake):
    children = {"childContexts": [f"{STORE}/contexts/ctx-b"]}
    for _ in range(2):
        assert send(fake, "POST", f"{STORE}/contexts/ctx-a:addContextChildren", children)[0] == 200
    assert fake.experiments.contexts[f"{STORE}/contexts/ctx-b"]["parentContexts"] == [
        f"{STORE}/contexts/ctx-a"
    ]
    reverse = {"childContexts": [f"{STORE}/contexts/ctx-a"]}
    code, answer = send(fake, "POST", f"{STORE}/contexts/ctx-b:addContextChildren", reverse)
    assert (code, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")


def test_the_time_series_list_pages(fake):
    fake.experiments.page_size = 1
    body = {"displayName": "acc", "valueType": "SCALAR"}
    assert send(fake, "POST", f"{TB_RUN}/timeSeries", body)[0] == 200
    first = send(fake, "GET", f"{TB_RUN}/timeSeries")[1]
    token = f"pageToken={first['nextPageToken']}"
    second = send(fake, "GET", f"{TB_RUN}/timeSeries", query=token)[1]
    names = [s["displayName"] for page in (first, second) for s in page["tensorboardTimeSeries"]]
    assert sorted(names) == ["acc", "loss"]
    assert "nextPageToken" not in second
