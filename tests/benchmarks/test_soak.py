"""The soak script's pure pieces: its accounting, its fuzz requests and its flags."""

import collections
import json
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))

import soak  # noqa: E402  (the script imports its siblings by file name)
import soak_fuzz  # noqa: E402
from soak_results import (  # noqa: E402
    Figure,
    Landed,
    Ledger,
    Sample,
    answer_classes,
    delivery_figures,
    format_table,
    resource_figures,
    rss_growth_mb,
    write_samples,
)

OBSERVATION_DIM, MAX_BODY = 20, 4096


def _sample(at_s: float, pid: int, rss_mb: float, emulator_rss_mb: float = 300.0) -> Sample:
    return Sample(at_s, load_avg=1.0, server_pid=pid, server_rss_mb=rss_mb, spool_mb=1.0,
                  wal_mb=0.0, emulator_rss_mb=emulator_rss_mb)


def test_rss_growth_is_per_server_process_and_ignores_its_warm_up():
    samples = [
        _sample(0, 11, 100), _sample(10, 11, 180), _sample(40, 11, 200), _sample(50, 11, 230),
        Sample(55, 1.0, None, None, 1.0, 0.0, None),  # the server was down
        _sample(60, 22, 150), _sample(95, 22, 160), _sample(100, 22, 155),
        _sample(120, 33, 400),  # still warming up when the run ended
    ]
    assert rss_growth_mb(samples, warmup_s=30) == {11: 30, 22: 0, 33: 0}


def _by_name(figures: list) -> dict:
    return {f.name: f for f in figures}


def test_delivery_counts_missing_duplicate_and_unconfirmed_rows():
    ledger = Ledger(answered={"a", "b", "c"}, rewarded={"a", "b"})
    landed = Landed(
        predictions=collections.Counter({"a": 2, "b": 1, "x": 1}),
        rewards=collections.Counter({"a": 1}),
        deduplicated_rows=2,
        joined_events=1,
    )
    figures = _by_name(delivery_figures(ledger, landed, "1.00"))
    missing = figures["answered predictions missing in BigQuery"]
    assert (missing.value, missing.ok) == ("1", False)
    assert figures["accepted rewards missing in BigQuery"].value == "1"
    assert figures["duplicates after read-time de-duplication"].ok is False
    assert figures["duplicate rows in the tables (before de-duplication)"].value == "1"
    assert figures["logged predictions never confirmed to a client"].value == "1"


def test_delivery_is_clean_when_every_confirmed_event_landed_once_after_dedup():
    ledger = Ledger(answered={"a", "b"}, rewarded={"a"})
    landed = Landed(collections.Counter({"a": 1, "b": 2}), collections.Counter({"a": 2}), 1, 1)
    verdicts = [f.ok for f in delivery_figures(ledger, landed, "1.00") if f.ok is not None]
    assert verdicts == [True, True, True]


def test_the_table_aligns_columns_and_marks_a_missed_target():
    table = format_table([
        Figure("missing", "0", "0", True, "1.50"),
        Figure("a much longer figure name", "3", "0", False, "2.00-3.10"),
        Figure("reported", "7", "", None, "1.00"),
    ]).splitlines()
    assert table[0].split() == ["figure", "value", "target", "met", "load", "avg", "(1", "min)"]
    assert set(table[1]) == {"-", " "}
    assert table[2].index("0") == table[3].index("3")  # the value column starts at one place
    assert " NO " in table[3] and " yes " in table[2] and "NO" not in table[4]


@pytest.mark.parametrize("kind", sorted(soak_fuzz.FUZZ_KINDS))
def test_every_fuzz_kind_builds_a_request_of_its_kind(kind):
    rng = np.random.default_rng(0)
    for _ in range(50):
        request = soak_fuzz.fuzz_request(rng, kind, OBSERVATION_DIM, MAX_BODY)
        assert request.kind == kind
        assert request.route.startswith("/")


def _json_requests(kind: str, count: int = 200) -> list:
    rng = np.random.default_rng(1)
    return [
        soak_fuzz.fuzz_request(rng, kind, OBSERVATION_DIM, MAX_BODY) for _ in range(count)
    ]


def test_valid_requests_are_in_contract_and_the_others_spoil_what_they_name():
    for request in _json_requests("valid"):
        (instance,) = json.loads(request.body)["instances"]
        assert 1 <= instance["user_id"] <= 943
        assert len(instance["observation"]) == OBSERVATION_DIM
    for request in _json_requests("user_id_edges"):
        (instance,) = json.loads(request.body)["instances"]
        assert not 1 <= instance["user_id"] <= 943
    for request in _json_requests("reward_out_of_range"):
        assert request.rewards_an_event
        reward = json.loads(request.body)["reward"]
        assert not -5 <= reward <= 10  # NaN compares false both ways, so it is out too


def test_oversize_bodies_exceed_the_server_limit_or_its_instance_count():
    for request in _json_requests("oversize_body", 20):
        body = request.body
        assert len(body) > MAX_BODY or len(json.loads(body)["instances"]) > 1000


def test_an_unknown_fuzz_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown fuzz kind 'typo'; one of .*'bad_json'"):
        soak_fuzz.fuzz_request(np.random.default_rng(0), "typo", OBSERVATION_DIM, MAX_BODY)


def test_a_fuzz_plan_is_reproducible_and_draws_every_kind():
    first = soak_fuzz.fuzz_plan(np.random.default_rng(7), 2000, OBSERVATION_DIM, MAX_BODY)
    again = soak_fuzz.fuzz_plan(np.random.default_rng(7), 2000, OBSERVATION_DIM, MAX_BODY)
    assert first == again
    assert {r.kind for r in first} == set(soak_fuzz.FUZZ_KINDS)


def test_the_tally_fails_5xx_and_unanswered_requests_only():
    tally = soak_fuzz.FuzzTally()
    request = soak_fuzz.FuzzRequest("bad_json", "POST", "/predict", b"{")
    for status in ("200", "400", "404", "413"):
        tally.record(request, status)
    assert tally.failures == 0 and tally.first_failure == {}
    tally.record(request, "500")
    tally.record(request, "ServerDisconnectedError")
    assert tally.failures == 2
    assert tally.by_kind["bad_json"] == {
        "2xx": 1, "4xx": 3, "5xx": 1, "ServerDisconnectedError": 1
    }
    assert tally.first_failure["bad_json"] == "POST /predict -> 500: b'{'"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--minutes", "0"], "--minutes must be > 0"),
        (["--rate", "-1"], "--rate must be > 0"),
        (["--reward-share", "1.5"], r"--reward-share must be in \[0, 1\]"),
        (["--minutes", "3", "--outage-s", "60"], "--outage-s 60 must end before the server is"),
        (["--fuzz", "0"], "--fuzz needs a number of requests >= 1"),
    ],
)
def test_bad_flags_say_what_is_wrong(argv, message):
    with pytest.raises(SystemExit, match=message):
        soak.parse_options(argv)


def test_flags_default_to_the_issue_targets_and_override_one_by_one():
    assert soak.parse_options([]) == soak.SoakOptions(
        minutes=30, rate=300, reward_share=0.5, outage_s=60
    )
    options = soak.parse_options(["--minutes", "3", "--rate", "100", "--outage-s", "20"])
    assert (options.minutes, options.rate, options.outage_s, options.fuzz) == (3, 100, 20, 0)


def test_client_errors_count_as_no_answer_and_statuses_stay():
    outcomes = collections.Counter(
        {"predict 200": 5, "predict 503": 1, "predict ClientConnectorError": 2,
         "predict ServerDisconnectedError": 1, "reward 200": 3}
    )
    assert answer_classes(outcomes) == {
        "predict 200": 5, "predict 503": 1, "predict no answer": 3, "reward 200": 3
    }


def test_samples_are_written_as_csv_with_a_header(tmp_path):
    path = tmp_path / "samples.csv"
    write_samples([_sample(0, 11, 100.5), Sample(5, 2.0, None, None, 3.0, 1.5, None)], path)
    lines = path.read_text().splitlines()
    assert lines[0] == "at_s,load_avg,server_pid,server_rss_mb,spool_mb,wal_mb,emulator_rss_mb"
    assert lines[1:] == ["0,1.0,11,100.5,1.0,0.0,300.0", "5,2.0,,,3.0,1.5,"]


def test_the_emulators_peak_and_last_rss_are_reported_and_gaps_skipped():
    samples = [_sample(0, 11, 100, 250), _sample(5, 11, 100, 900),
               Sample(10, 1.0, 11, 100, 1.0, 0.0, None), _sample(15, 11, 100, 400)]
    figures = _by_name(resource_figures(samples, spool_max_mb=1024))
    assert figures["emulator RSS, peak / at the end"].value == "900 MB / 400 MB"
