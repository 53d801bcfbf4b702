"""Where VertexRolloutPusher deploys, on what machines, and with which canary share.

The component's execution parameters, one field each. Every field is named
as its setting in the config's `vertex` section, which fills them.
"""

from __future__ import annotations

import dataclasses

from bandit_core.errors import require


@dataclasses.dataclass(frozen=True)
class RolloutSettings:
    """One Vertex endpoint and how a pushed model is served on it.

    Attributes:
      project, region: where the endpoint and the uploaded Models live.
      endpoint_name: display name of the endpoint, created on the first push.
      serving_image: the prediction server image every uploaded Model runs.
      serving_machine_type, serving_min_replicas, serving_max_replicas: each
        deployed model's machines.
      service_account: the identity the deployed server runs as.
      canary_traffic_percent: the new model's share while the previous one
        keeps the rest, until the next run's evaluation promotes or rolls it
        back; 0 switches all traffic to the new model at once.
      api_endpoint: the Vertex API host; empty means the regional one.
    """

    project: str
    region: str
    endpoint_name: str
    serving_image: str
    serving_machine_type: str
    serving_min_replicas: int
    serving_max_replicas: int
    service_account: str
    canary_traffic_percent: int = 0
    api_endpoint: str = ""

    def validate(self) -> "RolloutSettings":
        """The checks the rollout itself relies on; formats are the config's to check."""
        for field in ("project", "region", "endpoint_name", "serving_image"):
            require(bool(getattr(self, field)), f"vertex.{field}", "must be set to push to Vertex")
        require(self.serving_min_replicas >= 1, "vertex.serving_min_replicas", "must be >= 1")
        require(
            self.serving_max_replicas >= self.serving_min_replicas,
            "vertex.serving_max_replicas",
            "must be >= vertex.serving_min_replicas",
        )
        require(
            0 <= self.canary_traffic_percent < 100,
            "vertex.canary_traffic_percent",
            f"{self.canary_traffic_percent} must be 0 (switch all traffic to the new model) "
            "or a share in 1-99",
        )
        return self

    @property
    def api_host(self) -> str:
        return self.api_endpoint or f"{self.region}-aiplatform.googleapis.com"

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"
