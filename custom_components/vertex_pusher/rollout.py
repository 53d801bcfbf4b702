"""A push and a rollback on the endpoint: read its state, plan, carry the plan out.

The planning rules are `endpoint_rollout`'s and the canary rule `canary`'s;
this module only puts them together with the endpoint's client.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from custom_components.vertex_pusher.canary import judge_canary
from custom_components.vertex_pusher.endpoint_client import EndpointClient
from custom_components.vertex_pusher.endpoint_rollout import (
    RolloutError,
    plan_push,
    plan_rollback,
    roles,
)


@dataclasses.dataclass(frozen=True)
class RolloutResult:
    """What a push or a rollback did; `model` and `deployed_model_id` are empty without a deploy.

    `traffic` is the endpoint's split afterwards, by deployed model id.
    """

    endpoint: str
    model: str
    deployed_model_id: str
    traffic: Dict[str, int]
    undeployed: Tuple[str, ...]
    summary: str
    canary_verdict: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {**dataclasses.asdict(self), "undeployed": list(self.undeployed)}


def push(
    client: EndpointClient,
    artifact_uri: Optional[str],
    model_display_name: str,
    evaluation: Optional[Mapping[str, Any]],
) -> RolloutResult:
    """Settles a running canary by `evaluation`, then deploys `artifact_uri` if given.

    Args:
      client: the endpoint's client; its settings' canary_traffic_percent is
        the new model's share of traffic, 0 for all of it.
      artifact_uri: the gs:// SavedModel directory of a blessed policy, or
        None when the run blessed nothing (a canary is still settled).
      model_display_name: the uploaded Model's name in the Model Registry.
      evaluation: the run's PolicyEvaluator JSON, or None.
    """
    endpoint = client.find_or_create() if artifact_uri else client.find()
    if endpoint is None:
        return RolloutResult("", "", "", {}, (), "no endpoint yet and nothing to deploy")
    state = client.state(endpoint.name)
    verdict = judge_canary(evaluation) if roles(state).canary else None
    plan = plan_push(
        state,
        deploy_new=artifact_uri is not None,
        canary_percent=client.settings.canary_traffic_percent,
        canary_promoted=bool(verdict and verdict.promoted),
    )
    model = client.upload(artifact_uri, model_display_name) if plan.deploys else ""
    deployed_id = client.apply(endpoint.name, plan, model)
    return RolloutResult(
        endpoint=endpoint.name,
        model=model,
        deployed_model_id=deployed_id,
        traffic=dict(client.state(endpoint.name).traffic),
        undeployed=plan.undeploy,
        summary=plan.summary,
        canary_verdict=verdict.reason if verdict else "",
    )


def rollback(client: EndpointClient, dry_run: bool = False) -> RolloutResult:
    """All traffic back to the previous model and the current one undeployed.

    With `dry_run` the endpoint is read and the plan returned, nothing changed.
    """
    endpoint = client.find()
    if endpoint is None:
        raise RolloutError(
            f"no endpoint named {client.settings.endpoint_name!r} in {client.settings.parent}: "
            "nothing was pushed there. Check vertex.endpoint_name, vertex.project and "
            "vertex.region"
        )
    state = client.state(endpoint.name)
    plan = plan_rollback(state)
    if not dry_run:
        client.apply(endpoint.name, plan)
        state = client.state(endpoint.name)
    summary = ("would: " if dry_run else "") + plan.summary
    return RolloutResult(endpoint.name, "", "", dict(state.traffic), plan.undeploy, summary)
