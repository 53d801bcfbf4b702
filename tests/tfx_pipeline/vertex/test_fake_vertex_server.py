"""The fake Vertex control plane refuses what Google would refuse, with Google's statuses.

Malformed requests go over HTTP as raw JSON, the way a client with a bug would send
them; the last tests go through the aiplatform REST client, which must raise the
same `google.api_core` exceptions it raises against the real API.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Optional, Tuple

import pytest
from google.api_core import client_options, exceptions
from google.auth import credentials as auth_credentials
from google.cloud import aiplatform_v1

from tests.helpers.fake_vertex_server import FakeVertexServer

PARENT = "projects/my-proj/locations/europe-west4"
JOBS = f"/v1/{PARENT}/pipelineJobs"
SCHEDULES = f"/v1/{PARENT}/schedules"
SPEC = {
    "pipelineInfo": {"name": "movielens-bandits-retrain"},
    "schemaVersion": "2.0.0",
    "sdkVersion": "tfx-1.15.1",
    "root": {"dag": {"tasks": {}}},
}


def _job(**change: Any) -> Dict[str, Any]:
    job = {
        "displayName": "movielens-bandits-retrain",
        "pipelineSpec": SPEC,
        "runtimeConfig": {"gcsOutputDirectory": "gs://my-bucket/pipeline-root"},
        "labels": {"tfx_version": "1-15-1", "vertex-ai-pipelines-run-billing-id": "42"},
        "serviceAccount": "pipelines@my-proj.iam.gserviceaccount.com",
    }
    return {**job, **change}


def _schedule(**change: Any) -> Dict[str, Any]:
    schedule = {
        "displayName": "movielens-bandits-retrain-schedule",
        "cron": "0 3 * * *",
        "maxConcurrentRunCount": "1",
        "createPipelineJobRequest": {"parent": PARENT, "pipelineJob": _job()},
    }
    return {**schedule, **change}


def send(
    fake: FakeVertexServer,
    method: str,
    path: str,
    body: Optional[Any] = None,
    raw: Optional[bytes] = None,
    query: Optional[Dict[str, str]] = None,
) -> Tuple[int, Dict[str, Any]]:
    """(status, JSON answer) of one request; `raw` is sent as the body byte for byte."""
    url = fake.endpoint + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def fake():
    with FakeVertexServer() as server:
        yield server


def assert_refused(answer: Tuple[int, Dict[str, Any]], code: int, status: str, expected: str):
    """The answer is a google.rpc.Status of `code` whose message contains `expected`."""
    got_code, body = answer
    assert got_code == code, body
    assert set(body) == {"error"}
    assert (body["error"]["code"], body["error"]["status"]) == (code, status)
    assert expected in body["error"]["message"]


# --- pipeline jobs ------------------------------------------------------------------------------


def test_a_valid_pipeline_job_is_created_and_read_back(fake):
    status, created = send(fake, "POST", JOBS, _job(), query={"pipelineJobId": "retrain-1"})
    assert status == 200
    assert created["name"] == f"{PARENT}/pipelineJobs/retrain-1"
    assert created["state"] == "PIPELINE_STATE_PENDING"
    assert created["pipelineSpec"] == SPEC
    assert send(fake, "GET", f"{JOBS}/retrain-1") == (200, created)


def test_a_pipeline_job_id_in_use_is_a_conflict(fake):
    assert send(fake, "POST", JOBS, _job(), query={"pipelineJobId": "retrain-1"})[0] == 200
    again = send(fake, "POST", JOBS, _job(), query={"pipelineJobId": "retrain-1"})
    assert_refused(again, 409, "ALREADY_EXISTS", f"{PARENT}/pipelineJobs/retrain-1 already exists")


def test_an_unknown_pipeline_job_or_method_is_not_found(fake):
    assert_refused(send(fake, "GET", f"{JOBS}/nope"), 404, "NOT_FOUND", "nope not found")
    assert_refused(send(fake, "DELETE", f"{JOBS}/nope"), 404, "NOT_FOUND", "not a method")


@pytest.mark.parametrize(
    "body, raw, expected",
    [
        (_job(displayNme="x"), None, 'has no field named "displayNme"'),
        (_job(displayName=3), None, "Failed to parse displayName field"),
        (_job(pipelineSpec={"steps": [1, 2]}), None, 'PipelineSpec" has no field named "steps"'),
        (_job(pipelineSpec={**SPEC, "root": "everything"}), None, "Invalid PipelineJob.pipeline"),
        (
            _job(pipelineSpec={k: v for k, v in SPEC.items() if k != "root"}),
            None,
            "pipeline_spec: root is required",
        ),
        (
            _job(pipelineSpec={**SPEC, "pipelineInfo": {}}),
            None,
            "pipeline_spec: pipelineInfo.name is required",
        ),
        ({"displayName": "no spec"}, None, "PipelineJob.pipeline_spec is required"),
        (_job(runtimeConfig={"gcsOutputDirectory": "/data/root"}), None, "Cloud Storage path"),
        (_job(runtimeConfig={"gcsOutputDir": "gs://b/r"}), None, 'no field named "gcsOutputDir"'),
        (_job(labels={"Team": "bandits"}), None, "Invalid label 'Team'"),
        (_job(labels={"team": "Bandits"}), None, "Invalid label 'team'"),
        (_job(labels={"team": "b" * 65}), None, "Invalid label 'team'"),
        (_job(displayName="x" * 129), None, "129 characters long"),
        (None, b"[1, 2]", "the body must be a JSON object"),
        (None, b'{"displayName": "a"', "Invalid JSON payload received"),
        (None, b'{"displayName": "a", "displayName": "b"}', "duplicate key displayName"),
    ],
    ids=[
        "misspelled-field", "wrong-type", "nonsense-spec", "spec-field-wrong-type",
        "spec-without-root", "spec-without-name", "no-spec", "local-root", "misspelled-nested",
        "label-key-uppercase", "label-value-uppercase", "label-value-too-long",
        "display-name-too-long", "not-an-object", "not-json", "duplicate-key",
    ],
)
def test_a_malformed_pipeline_job_is_refused(fake, body, raw, expected):
    answer = send(fake, "POST", JOBS, body, raw=raw, query={"pipelineJobId": "retrain-1"})
    assert_refused(answer, 400, "INVALID_ARGUMENT", expected)
    assert fake.pipeline_jobs == {}


@pytest.mark.parametrize(
    "job_id", ["Retrain-1", "retrain_1", "-retrain", "ré", "a" * 129, "retrain.1"]
)
def test_an_invalid_pipeline_job_id_is_refused(fake, job_id):
    answer = send(fake, "POST", JOBS, _job(), query={"pipelineJobId": job_id})
    assert_refused(answer, 400, "INVALID_ARGUMENT", f"Invalid pipeline job id {job_id!r}")


@pytest.mark.parametrize("job_id", ["retrain", "0-retrain-20240101", "a" * 128])
def test_valid_pipeline_job_ids_are_accepted(fake, job_id):
    assert send(fake, "POST", JOBS, _job(), query={"pipelineJobId": job_id})[0] == 200


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"pipelineJobID": "retrain-1"}, 'no field named "pipelineJobID"'),
        ({"parent": PARENT}, 'Unknown name "parent"'),
    ],
)
def test_a_query_parameter_the_request_has_no_field_for_is_refused(fake, query, expected):
    answer = send(fake, "POST", JOBS, _job(), query=query)
    assert_refused(answer, 400, "INVALID_ARGUMENT", expected)


# --- schedules ----------------------------------------------------------------------------------


def test_a_valid_schedule_is_created_listed_and_read_back(fake):
    status, created = send(fake, "POST", SCHEDULES, _schedule())
    assert status == 200
    assert created["name"] == f"{PARENT}/schedules/1"
    assert (created["state"], created["cron"]) == ("ACTIVE", "0 3 * * *")
    assert send(fake, "GET", f"{SCHEDULES}/1") == (200, created)
    by_name = {"filter": 'display_name="movielens-bandits-retrain-schedule"'}
    assert send(fake, "GET", SCHEDULES, query=by_name) == (200, {"schedules": [created]})
    assert send(fake, "GET", SCHEDULES, query={"filter": 'display_name="other"'}) == (200, {})
    assert_refused(send(fake, "GET", f"{SCHEDULES}/2"), 404, "NOT_FOUND", "schedules/2 not found")


@pytest.mark.parametrize(
    "cron",
    [
        "0 3 * * *",
        "*/15 0-6,22-23 1,15 JAN-JUN MON",
        "CRON_TZ=Europe/Amsterdam 0 3 * * 1-5",
        "TZ=America/New_York 30 2 1-7/2 * SUN",
        "0 0 * * 7",
    ],
)
def test_unix_cron_expressions_are_accepted(fake, cron):
    assert send(fake, "POST", SCHEDULES, _schedule(cron=cron))[0] == 200


@pytest.mark.parametrize(
    "cron, expected",
    [
        ("every day", "expected 5 fields"),
        ("0 3 * *", "expected 5 fields"),
        ("0 3 * * * *", "expected 5 fields"),
        ("0 24 * * *", "'24' is not a valid hour"),
        ("60 3 * * *", "'60' is not a valid minute"),
        ("0 3 0 * *", "'0' is not a valid day of month"),
        ("0 3 * 13 *", "'13' is not a valid month"),
        ("0 3 * * 8", "'8' is not a valid day of week"),
        ("*/0 3 * * *", "'*/0' is not a valid minute"),
        ("0 5-3 * * *", "'5-3' is not a valid hour"),
        ("0 3 * * MON-SUN", "'MON-SUN' is not a valid day of week"),
        ("0 3 * * MONDAY", "'MONDAY' is not a valid day of week"),
        ("0 ² * * *", "'²' is not a valid hour"),
        ("0 3,,4 * * *", "'' is not a valid hour"),
        ("TZ=Mars/Olympus_Mons 0 3 * * *", "'Mars/Olympus_Mons' is not an IANA time zone"),
        ("CRON_TZ= 0 3 * * *", "'' is not an IANA time zone"),
    ],
)
def test_an_invalid_cron_is_refused(fake, cron, expected):
    answer = send(fake, "POST", SCHEDULES, _schedule(cron=cron))
    assert_refused(answer, 400, "INVALID_ARGUMENT", f"Invalid Schedule.cron {cron!r}: {expected}")
    assert fake.schedules == []


@pytest.mark.parametrize(
    "body, expected",
    [
        (_schedule(cronn="0 3 * * *"), 'has no field named "cronn"'),
        ({k: v for k, v in _schedule().items() if k != "cron"}, "Schedule.cron is required"),
        (_schedule(displayName=""), "Schedule.display_name is required"),
        (_schedule(maxConcurrentRunCount="0"), "max_concurrent_run_count is required"),
        (
            {k: v for k, v in _schedule().items() if k != "createPipelineJobRequest"},
            "Schedule.create_pipeline_job_request is required",
        ),
        (
            _schedule(createPipelineJobRequest={
                "parent": "projects/my-proj/locations/us-central1", "pipelineJob": _job()
            }),
            "create_pipeline_job_request.parent must be",
        ),
        (
            _schedule(createPipelineJobRequest={
                "parent": PARENT, "pipelineJob": _job(), "pipelineJobId": "Nightly"
            }),
            "Invalid pipeline job id 'Nightly'",
        ),
        (
            _schedule(createPipelineJobRequest={
                "parent": PARENT, "pipelineJob": _job(pipelineSpec={"nonsense": True})
            }),
            'PipelineSpec" has no field named "nonsense"',
        ),
    ],
    ids=[
        "misspelled-field", "no-cron", "no-display-name", "no-run-limit", "no-job-request",
        "job-in-another-location", "invalid-job-id", "nonsense-job-spec",
    ],
)
def test_a_malformed_schedule_is_refused(fake, body, expected):
    assert_refused(send(fake, "POST", SCHEDULES, body), 400, "INVALID_ARGUMENT", expected)
    assert fake.schedules == []


def test_a_schedule_listing_with_an_unknown_parameter_is_refused(fake):
    answer = send(fake, "GET", SCHEDULES, query={"filtre": 'display_name="x"'})
    assert_refused(answer, 400, "INVALID_ARGUMENT", 'no field named "filtre"')


# --- through Google's client -------------------------------------------------------------------


@pytest.fixture
def pipelines(fake) -> aiplatform_v1.PipelineServiceClient:
    return aiplatform_v1.PipelineServiceClient(
        credentials=auth_credentials.AnonymousCredentials(),
        transport="rest",
        client_options=client_options.ClientOptions(api_endpoint=fake.endpoint),
    )


def _client_job() -> aiplatform_v1.PipelineJob:
    return aiplatform_v1.PipelineJob.from_json(json.dumps(_job()), ignore_unknown_fields=False)


def test_the_rest_client_gets_google_api_core_exceptions(fake, pipelines):
    created = pipelines.create_pipeline_job(
        parent=PARENT, pipeline_job=_client_job(), pipeline_job_id="retrain-1"
    )
    assert created.name == f"{PARENT}/pipelineJobs/retrain-1"
    assert fake.requests[-1].query["$alt"] == "json;enum-encoding=int"
    assert pipelines.get_pipeline_job(name=created.name).state == (
        aiplatform_v1.PipelineState.PIPELINE_STATE_PENDING
    )

    with pytest.raises(exceptions.Conflict, match="already exists"):
        pipelines.create_pipeline_job(
            parent=PARENT, pipeline_job=_client_job(), pipeline_job_id="retrain-1"
        )
    with pytest.raises(exceptions.BadRequest, match="Invalid pipeline job id 'Retrain-2'"):
        pipelines.create_pipeline_job(
            parent=PARENT, pipeline_job=_client_job(), pipeline_job_id="Retrain-2"
        )
    with pytest.raises(exceptions.NotFound, match="retrain-3 not found"):
        pipelines.get_pipeline_job(name=f"{PARENT}/pipelineJobs/retrain-3")


def test_the_rest_client_gets_a_bad_request_for_an_invalid_cron(fake):
    schedules = aiplatform_v1.ScheduleServiceClient(
        credentials=auth_credentials.AnonymousCredentials(),
        transport="rest",
        client_options=client_options.ClientOptions(api_endpoint=fake.endpoint),
    )
    schedule = aiplatform_v1.Schedule.from_json(json.dumps(_schedule(cron="every day")))
    with pytest.raises(exceptions.BadRequest, match="Invalid Schedule.cron 'every day'"):
        schedules.create_schedule(parent=PARENT, schedule=schedule)
