"""Which deployed models an endpoint keeps, and how its traffic is split, after a push.

Pure: the endpoint's state in, a plan out, so every rule is tested without a
network. The rules keep at most two deployed models: the one serving and one
to fall back to. Each deployed model holds its own machines, so everything
else is undeployed; the fallback stays deployed (at 0% traffic, or with the
rest of the traffic while a canary runs) because moving traffic back to a
deployed model takes seconds, while deploying one again takes minutes.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Tuple

# DeployModelRequest.traffic_split's key for the model that request deploys.
NEW_MODEL = "0"


class RolloutError(RuntimeError):
    """The endpoint is in a state these rules cannot plan from, or has nothing to roll back to."""


@dataclasses.dataclass(frozen=True)
class EndpointState:
    """What an endpoint serves now.

    Attributes:
      deployed: ids of its deployed models, oldest first.
      traffic: percent of traffic by deployed model id; ids not listed get none.
    """

    deployed: Tuple[str, ...]
    traffic: Mapping[str, int]


@dataclasses.dataclass(frozen=True)
class Roles:
    """Who does what on an endpoint: at most one stable model, one canary, any standbys."""

    stable: Optional[str]
    canary: Optional[str]
    standbys: Tuple[str, ...]  # deployed without traffic, newest first


@dataclasses.dataclass(frozen=True)
class Plan:
    """The traffic split to set and the deployed models to undeploy afterwards.

    `traffic` holds NEW_MODEL when the plan deploys a model; ids it leaves out
    get no traffic. `undeploy` never holds a model `traffic` gives a share.
    """

    traffic: Dict[str, int]
    undeploy: Tuple[str, ...]
    summary: str

    @property
    def deploys(self) -> bool:
        return NEW_MODEL in self.traffic


def roles(state: EndpointState) -> Roles:
    """The stable model holds the larger share (the older one on a tie), a canary the other."""
    serving = [d for d in state.deployed if state.traffic.get(d, 0) > 0]
    if len(serving) > 2:
        split = ", ".join(f"{d}: {state.traffic[d]}%" for d in serving)
        raise RolloutError(
            f"the endpoint splits its traffic among {len(serving)} deployed models ({split}); "
            "a rollout handles one stable model and at most one canary. Give one model 100% "
            "(console: Vertex AI > Online prediction > the endpoint > Edit traffic split) and "
            "push again"
        )
    serving.sort(key=lambda d: -state.traffic[d])  # stable sort: older first on a tie
    standbys = tuple(d for d in reversed(state.deployed) if d not in serving)
    return Roles(
        stable=serving[0] if serving else None,
        canary=serving[1] if len(serving) == 2 else None,
        standbys=standbys,
    )


def plan_push(
    state: EndpointState,
    deploy_new: bool,
    canary_percent: int,
    canary_promoted: bool,
) -> Plan:
    """Settles a running canary, then deploys the new model if there is one.

    Args:
      state: the endpoint before the push.
      deploy_new: a blessed model is to be deployed.
      canary_percent: the new model's share while the previous one keeps the
        rest; 0 switches all traffic to it (the previous stays at 0%).
      canary_promoted: the verdict on a running canary (ignored without one):
        True gives it all traffic, False undeploys it.
    """
    _check_percent(canary_percent)
    current = roles(state)
    serving, fallback = current.stable, _first(current.standbys)
    settled = ""
    if current.canary is not None:
        if canary_promoted:
            serving, fallback = current.canary, current.stable
            settled = f"canary {current.canary} promoted; "
        else:
            settled = f"canary {current.canary} rolled back to {current.stable}; "
    if deploy_new:
        previous = serving or fallback
        if previous is not None and canary_percent > 0:
            traffic = {NEW_MODEL: canary_percent, previous: 100 - canary_percent}
            summary = f"new model gets {canary_percent}%, {previous} keeps the rest"
        else:
            traffic = {NEW_MODEL: 100}
            kept = f", {previous} kept at 0% for rollback" if previous else ""
            summary = f"new model gets 100%{kept}"
        keep = {previous}
    else:
        traffic = {serving: 100} if serving else dict(state.traffic)
        keep = {serving, fallback}
        summary = f"{serving} keeps 100%" if serving else "no model serves; nothing to deploy"
    undeploy = tuple(d for d in state.deployed if d not in keep)
    return Plan(traffic, undeploy, settled + summary + _undeploy_note(undeploy))


def plan_rollback(state: EndpointState) -> Plan:
    """All traffic back to the model served before, and the model rolled back undeployed.

    During a canary that is the stable model; otherwise the newest standby.
    """
    current = roles(state)
    if current.canary is not None:
        back_to, dropped = current.stable, current.canary
    elif current.stable is not None and current.standbys:
        back_to, dropped = current.standbys[0], current.stable
    else:
        raise RolloutError(
            f"nothing to roll back to: the endpoint has {len(state.deployed)} deployed model(s) "
            f"and no previous one ({_describe(state)}). Deploy an earlier Model from the Model "
            "Registry to the endpoint (console: Vertex AI > Model Registry > the model > Deploy "
            "to endpoint) instead"
        )
    undeploy = (dropped,)
    return Plan({back_to: 100}, undeploy, f"{back_to} gets 100%" + _undeploy_note(undeploy))


def _check_percent(percent: int) -> None:
    if not 0 <= percent < 100:
        raise ValueError(
            f"canary_percent {percent} must be in [0, 99]: the new model's share of traffic, "
            "or 0 to switch all traffic to it"
        )


def _first(ids: Tuple[str, ...]) -> Optional[str]:
    return ids[0] if ids else None


def _undeploy_note(undeploy: Tuple[str, ...]) -> str:
    return f"; undeploy {', '.join(undeploy)}" if undeploy else ""


def _describe(state: EndpointState) -> str:
    if not state.deployed:
        return "none deployed"
    return ", ".join(f"{d}: {state.traffic.get(d, 0)}%" for d in state.deployed)
