"""The soak's `--fuzz` mode: random malformed or out-of-contract requests and their answers.

The server may refuse anything here (4xx) or, before the data contract, accept the
out-of-contract values (2xx); what it must never do is fail (5xx) or not answer. A
served prediction gets a valid reward, as a real client's would, so whatever the server
accepted reaches the rows the next retrain validates.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
from typing import Any, Callable, Counter, Dict, List, Optional, Tuple

import aiohttp
import numpy as np

from soak_results import Figure, Ledger, RetrainOutcome, load_now

FUZZ_KINDS = {  # kind -> share of the fuzz requests
    "bad_json": 0.12,
    "wrong_types": 0.12,
    "huge_numbers": 0.11,
    "user_id_edges": 0.11,
    "reward_out_of_range": 0.11,
    "unknown_fields": 0.11,
    "wrong_route_or_method": 0.11,
    "oversize_body": 0.01,
    "valid": 0.20,  # the control: must be 200; rewarded, so the retrain has data
}
EVENT_ID = b"EVENT_ID"  # in a reward body: replaced by a served event's id when sent
VALID_USER_IDS = (1, 943)  # MovieLens 100K's users
VALID_REWARD = 3.0
CONCURRENCY = 16
OUT_OF_RANGE_POOL = 100  # valid served events kept back for out-of-range rewards
REQUEST_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class FuzzRequest:
    kind: str
    method: str
    route: str
    body: bytes

    @property
    def rewards_an_event(self) -> bool:
        return EVENT_ID in self.body


@dataclasses.dataclass(frozen=True)
class _Material:
    """A valid instance to spoil, and a random choice among variants."""

    rng: np.random.Generator
    observation: List[float]
    user_id: int
    max_body_bytes: int

    def pick(self, options: List[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def instance(self, **changes: Any) -> Dict[str, Any]:
        return {"observation": self.observation, "user_id": self.user_id, **changes}

    def predict(self, instance: Any, **top: Any) -> bytes:
        return json.dumps({"instances": [instance], **top}).encode()


def _valid(m: _Material) -> FuzzRequest:
    return FuzzRequest("valid", "POST", "/predict", m.predict(m.instance()))


def _bad_json(m: _Material) -> FuzzRequest:
    body = m.pick([
        b"", b"{", b'{"instances": [', b"null", b"[]", b"\xff\xfe\x00", b"Infinity",
        m.rng.bytes(int(m.rng.integers(1, 200))), b'{"instances": [{"observation": [1,}]}',
        m.predict(m.instance()).replace(b"]", b"", 1),
    ])
    return FuzzRequest("bad_json", "POST", m.pick(["/predict", "/reward"]), body)


def _wrong_types(m: _Material) -> FuzzRequest:
    spoiled = m.pick([
        {"observation": "0.5"}, {"observation": [str(v) for v in m.observation]},
        {"observation": [m.observation]}, {"observation": [True] * len(m.observation)},
        {"observation": m.observation[:-1]}, {"user_id": str(m.user_id)}, {"user_id": 1.5},
        {"user_id": True}, {"user_id": [m.user_id]},
    ])
    body = m.pick([
        m.predict(m.instance(**spoiled)), json.dumps({"instances": m.instance()}).encode(),
        json.dumps({"instances": "x"}).encode(), json.dumps([m.instance()]).encode(),
    ])
    reward = m.pick([{"event_id": 7, "reward": 1.0}, {"event_id": "x", "reward": "1"},
                     {"event_id": None, "reward": True}, {"reward": 1.0}])
    if m.rng.random() < 0.3:
        return FuzzRequest("wrong_types", "POST", "/reward", json.dumps(reward).encode())
    return FuzzRequest("wrong_types", "POST", "/predict", body)


def _huge_numbers(m: _Material) -> FuzzRequest:
    number = m.pick(["1e999", "-1e400", "1e308", "3.5e38", "123456789012345678901234567890"])
    values = ", ".join([number] + [str(v) for v in m.observation[1:]])
    body = m.pick([
        f'{{"instances": [{{"observation": [{values}], "user_id": {m.user_id}}}]}}'.encode(),
        m.predict(m.instance(user_id=10**30)), m.predict(m.instance(user_id=-(10**30))),
    ])
    return FuzzRequest("huge_numbers", "POST", "/predict", body)


def _user_id_edges(m: _Material) -> FuzzRequest:
    """Zero, negative, past MovieLens' 943 users, at and past int64: some are in the
    contract (user_id >= 1), some not; either way the answer must be 2xx or 4xx."""
    user_id = m.pick([0, -1, -7, -(2**63), 10**12, 2**63 - 1, 2**63, 2**64, 944, 10**6])
    return FuzzRequest(
        "user_id_edges", "POST", "/predict", m.predict(m.instance(user_id=user_id))
    )


def _reward_out_of_range(m: _Material) -> FuzzRequest:
    reward = m.pick(["1e300", "-1e300", "11", "-6", "10.000001", "-5.000001", "1e999", "NaN"])
    body = b'{"event_id": "' + EVENT_ID + b'", "reward": ' + reward.encode() + b"}"
    return FuzzRequest("reward_out_of_range", "POST", "/reward", body)


def _unknown_fields(m: _Material) -> FuzzRequest:
    reward = {"event_id": EVENT_ID.decode(), "reward": VALID_REWARD, "user_id": 3}
    route, body = m.pick([
        ("/predict", m.predict(m.instance(), extra=1)),
        ("/predict", m.predict(m.instance(rating=4))),
        ("/predict", m.predict(m.instance(), parameters={"k": 1})),
        ("/reward", json.dumps(reward).encode()),
    ])
    return FuzzRequest("unknown_fields", "POST", route, body)


def _oversize_body(m: _Material) -> FuzzRequest:
    body = m.pick([
        b" " * (m.max_body_bytes + 1) + m.predict(m.instance()),
        json.dumps({"instances": [m.instance()] * 1001}).encode(),
    ])
    return FuzzRequest("oversize_body", "POST", "/predict", body)


def _wrong_route_or_method(m: _Material) -> FuzzRequest:
    method, route = m.pick([
        ("GET", "/predict"), ("PUT", "/reward"), ("DELETE", "/health"), ("POST", "/health"),
        ("POST", "/predict/extra"), ("GET", "/nope"), ("PATCH", "/predict"),
        ("OPTIONS", "/reward"), ("POST", "/"),
    ])
    return FuzzRequest("wrong_route_or_method", method, route, m.predict(m.instance()))


_BUILDERS: Dict[str, Callable[[_Material], FuzzRequest]] = {
    "valid": _valid,
    "bad_json": _bad_json,
    "wrong_types": _wrong_types,
    "huge_numbers": _huge_numbers,
    "user_id_edges": _user_id_edges,
    "reward_out_of_range": _reward_out_of_range,
    "unknown_fields": _unknown_fields,
    "oversize_body": _oversize_body,
    "wrong_route_or_method": _wrong_route_or_method,
}


def fuzz_request(
    rng: np.random.Generator, kind: str, observation_dim: int, max_body_bytes: int
) -> FuzzRequest:
    """One random request of `kind`, built from a valid one."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown fuzz kind {kind!r}; one of {sorted(_BUILDERS)}")
    material = _Material(
        rng=rng,
        observation=rng.normal(size=observation_dim).round(4).tolist(),
        user_id=int(rng.integers(VALID_USER_IDS[0], VALID_USER_IDS[1] + 1)),
        max_body_bytes=max_body_bytes,
    )
    return _BUILDERS[kind](material)


def fuzz_plan(
    rng: np.random.Generator, count: int, observation_dim: int, max_body_bytes: int
) -> List[FuzzRequest]:
    """`count` requests, their kinds drawn with FUZZ_KINDS' shares."""
    kinds, shares = zip(*FUZZ_KINDS.items())
    drawn = rng.choice(kinds, size=count, p=np.array(shares) / sum(shares))
    return [fuzz_request(rng, str(kind), observation_dim, max_body_bytes) for kind in drawn]


def status_class(status: str) -> str:
    """'2xx', '4xx', '5xx', or the client error's name when there was no answer."""
    return f"{status[0]}xx" if status.isdigit() else status


@dataclasses.dataclass
class FuzzTally:
    """Answers per request kind and status class, and the first failure of each kind."""

    by_kind: Dict[str, Counter[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    first_failure: Dict[str, str] = dataclasses.field(default_factory=dict)

    def record(self, request: FuzzRequest, status: str) -> None:
        kind = request.kind
        self.by_kind[kind][status_class(status)] += 1
        if status_class(status) not in ("2xx", "4xx"):
            self.first_failure.setdefault(
                kind, f"{request.method} {request.route} -> {status}: {request.body[:80]!r}"
            )

    @property
    def failures(self) -> int:
        """Answers other than 2xx/4xx, no answer included."""
        return sum(
            n for c in self.by_kind.values() for k, n in c.items() if k not in ("2xx", "4xx")
        )


def fuzz_figures(tally: FuzzTally, retrain: RetrainOutcome) -> List[Figure]:
    load = load_now()
    rows = [
        Figure(f"{kind}: answers by class",
               ", ".join(f"{c} {n:,}" for c, n in sorted(counts.items())), "", None, load)
        for kind, counts in sorted(tally.by_kind.items())
    ]
    rows.append(Figure("answers other than 2xx/4xx (or none)", str(tally.failures), "0",
                       tally.failures == 0, load))
    rows += [Figure(f"first failure, {kind}", text, "", None, load)
             for kind, text in sorted(tally.first_failure.items())]
    retrain_load = f"{retrain.load_avg:.2f}"
    rows.append(Figure("the retrain after the fuzz", "ok" if retrain.ok else
                       f"FAILED: {retrain.error}", "succeeds", retrain.ok, retrain_load))
    rows.append(Figure("anomalies at that retrain", str(len(retrain.anomalies)), "0",
                       not retrain.anomalies, retrain_load))
    rows += [Figure("  anomaly", line, "", None, retrain_load) for line in retrain.anomalies]
    return rows


async def send_fuzz(url: str, plan: List[FuzzRequest]) -> Tuple[FuzzTally, Ledger]:
    """Sends the plan on CONCURRENCY connections; returns the tally and the confirmed events."""
    tally, ledger = FuzzTally(), Ledger()
    pool: List[str] = []
    queue: asyncio.Queue = asyncio.Queue()
    for request in plan:
        queue.put_nowait(request)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout) as http:

        async def worker() -> None:
            while not queue.empty():
                await _fuzz_one(http, queue.get_nowait(), tally, ledger, pool)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return tally, ledger


async def _fuzz_one(
    http: aiohttp.ClientSession,
    request: FuzzRequest,
    tally: FuzzTally,
    ledger: Ledger,
    pool: List[str],
) -> None:
    if request.rewards_an_event:
        if not pool:
            return  # nothing served to reward yet; counted as not sent
        event_id = pool.pop()
        body = request.body.replace(EVENT_ID, event_id.encode())
        request = dataclasses.replace(request, body=body)
    status, answer = await _send(http, request)
    tally.record(request, status)
    ledger.sent += 1
    if status != "200":
        return
    if request.rewards_an_event:
        ledger.rewarded.add(event_id)
        return
    if request.route != "/predict":
        return
    served = answer["predictions"][0]["event_id"]
    ledger.answered.add(served)
    if request.kind == "valid" and len(pool) < OUT_OF_RANGE_POOL:
        pool.append(served)
        return
    reward = json.dumps({"event_id": served, "reward": VALID_REWARD}).encode()
    reward_request = FuzzRequest("valid reward", "POST", "/reward", reward)
    status, _ = await _send(http, reward_request)
    tally.record(reward_request, status)
    if status == "200":
        ledger.rewarded.add(served)


async def _send(http: aiohttp.ClientSession, request: FuzzRequest) -> Tuple[str, Optional[Any]]:
    """(HTTP status or the client error's name, the JSON of a 200 answer)."""
    headers = {"Content-Type": "application/json"}
    try:
        async with http.request(
            request.method, request.route, data=request.body, headers=headers
        ) as response:
            text = await response.read()
            return str(response.status), json.loads(text) if response.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
        return type(error).__name__, None
