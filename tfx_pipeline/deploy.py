"""Pusher/deploy: where a blessed policy goes, locally and on Vertex AI.

Both pushers consume the evaluator's blessing, so an unblessed policy is never
pushed. Locally the stock Pusher copies the SavedModel into a versioned
directory that the prediction server watches; on Google Cloud TFX's Vertex
Pusher uploads it as a Model and deploys it to one long-lived endpoint.
"""

from typing import Any, Dict, Optional

from tfx import types
from tfx import v1 as tfx

from tfx_pipeline.vertex.config import VertexConfig


def pusher(
    model: types.BaseChannel,
    model_blessing: types.BaseChannel,
    push_base_directory: str,
    vertex_push: Optional[Dict[str, Any]] = None,
) -> Any:
    """The filesystem Pusher, or the Vertex Pusher when `vertex_push` is given."""
    if vertex_push is None:
        return tfx.components.Pusher(
            model=model,
            model_blessing=model_blessing,
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory=push_base_directory)
            ),
        )
    return tfx.extensions.google_cloud_ai_platform.Pusher(
        model=model, model_blessing=model_blessing, custom_config=vertex_push
    )


def vertex_push_config(vertex: VertexConfig) -> Dict[str, Any]:
    """custom_config of TFX's Vertex Pusher (`vertex_push` of `pusher`).

    The endpoint is looked up by display name and created only when missing,
    so every push deploys a new model to the same long-lived endpoint and
    moves all traffic to it.
    """
    ai_platform = tfx.extensions.google_cloud_ai_platform
    return {
        ai_platform.ENABLE_VERTEX_KEY: True,
        ai_platform.VERTEX_REGION_KEY: vertex.region,
        ai_platform.VERTEX_CONTAINER_IMAGE_URI_KEY: vertex.serving_image,
        ai_platform.SERVING_ARGS_KEY: {
            "project": vertex.project,
            "endpoint_name": vertex.endpoint_name,
            "machine_type": vertex.serving_machine_type,
            "min_replica_count": vertex.serving_min_replicas,
            "max_replica_count": vertex.serving_max_replicas,
            "traffic_percentage": 100,
            # The server logs predictions and rewards to BigQuery as this account.
            "service_account": vertex.service_account,
        },
    }
