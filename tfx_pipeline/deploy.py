"""Pusher/deploy: where a blessed policy goes, locally and on Vertex AI.

Both pushers consume the evaluator's blessing, so an unblessed policy is never
pushed. Locally the stock Pusher copies the SavedModel into a versioned
directory that the prediction server watches. On Google Cloud the
VertexRolloutPusher uploads it as a Model and deploys it to one long-lived
endpoint, keeping only the previous model beside it for rollback, so the
endpoint's cost does not grow with the schedule.
"""

import dataclasses
from typing import Any, Dict, Optional

from tfx import types
from tfx import v1 as tfx

from custom_components.vertex_pusher import rollout
from custom_components.vertex_pusher.component import VertexRolloutPusher
from custom_components.vertex_pusher.endpoint_client import EndpointClient
from custom_components.vertex_pusher.settings import RolloutSettings
from tfx_pipeline.vertex.config import VertexConfig

# The node id both pushers share, so the DAG's shape does not depend on where it runs.
PUSHER_ID = "Pusher"


def pusher(
    model: types.BaseChannel,
    model_blessing: types.BaseChannel,
    push_base_directory: str,
    vertex_push: Optional[RolloutSettings] = None,
    evaluation: Optional[types.BaseChannel] = None,
) -> Any:
    """The filesystem Pusher, or the VertexRolloutPusher when `vertex_push` is given.

    `evaluation` (the evaluator's) settles a running Vertex canary; the
    filesystem Pusher has none to settle.
    """
    if vertex_push is None:
        return tfx.components.Pusher(
            model=model,
            model_blessing=model_blessing,
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory=push_base_directory)
            ),
        )
    return VertexRolloutPusher(
        model=model, model_blessing=model_blessing, settings=vertex_push, evaluation=evaluation
    ).with_id(PUSHER_ID)


def vertex_push_config(vertex: VertexConfig) -> RolloutSettings:
    """The VertexRolloutPusher's settings (`vertex_push` of `pusher`), from the `vertex` section."""
    return RolloutSettings(
        **{f.name: getattr(vertex, f.name) for f in dataclasses.fields(RolloutSettings)}
    ).validate()


def rollback(vertex: VertexConfig, dry_run: bool = False) -> Dict[str, Any]:
    """`mlbandits vertex rollback`: the endpoint's traffic back to the model served before.

    During a canary that is the stable model; otherwise the model kept at 0%
    by the last push. The model rolled back is undeployed (its Model stays in
    the Model Registry); with `dry_run` the plan is returned, nothing changed.
    """
    client = EndpointClient(vertex_push_config(vertex))
    return rollout.rollback(client, dry_run=dry_run).to_json()
