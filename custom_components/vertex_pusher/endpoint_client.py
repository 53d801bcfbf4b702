"""Reads a Vertex endpoint's state and carries out a rollout plan on it.

Google's `aiplatform_v1` clients over the REST transport, the transport the
tests' local Vertex control plane speaks, so the tested path is the one that
runs on Google Cloud. Each call waits for its long-running operation: the
next step of a rollout depends on the previous one having happened.
"""

from __future__ import annotations

from typing import Dict, Optional

from google.api_core import client_options
from google.auth import credentials as auth_credentials
from google.cloud import aiplatform_v1
from google.protobuf import field_mask_pb2

from custom_components.vertex_pusher.endpoint_rollout import (
    NEW_MODEL,
    EndpointState,
    Plan,
    RolloutError,
)
from custom_components.vertex_pusher.settings import RolloutSettings

# A deployment provisions machines and can take half an hour; it is not stuck before then.
OPERATION_TIMEOUT_SECONDS = 3600


class EndpointClient:
    """The one endpoint named `settings.endpoint_name`, and the Models deployed to it."""

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings
        options = client_options.ClientOptions(api_endpoint=settings.api_host)
        credentials = _credentials(settings.api_endpoint)
        self._endpoints = aiplatform_v1.EndpointServiceClient(
            credentials=credentials, transport="rest", client_options=options
        )
        self._models = aiplatform_v1.ModelServiceClient(
            credentials=credentials, transport="rest", client_options=options
        )

    def find(self) -> Optional[aiplatform_v1.Endpoint]:
        """The endpoint, or None before the first push created it."""
        name = self.settings.endpoint_name
        found = list(
            self._endpoints.list_endpoints(
                request={"parent": self.settings.parent, "filter": f'display_name="{name}"'}
            )
        )
        if len(found) > 1:
            names = ", ".join(e.name for e in found)
            raise RolloutError(
                f"{len(found)} endpoints are named {name!r} ({names}); keep one (delete the others "
                "with `gcloud ai endpoints delete`) or set vertex.endpoint_name to a unique name"
            )
        return found[0] if found else None

    def find_or_create(self) -> aiplatform_v1.Endpoint:
        endpoint = self.find()
        if endpoint is not None:
            return endpoint
        operation = self._endpoints.create_endpoint(
            parent=self.settings.parent,
            endpoint=aiplatform_v1.Endpoint(display_name=self.settings.endpoint_name),
        )
        return operation.result(timeout=OPERATION_TIMEOUT_SECONDS)

    def state(self, endpoint_name: str) -> EndpointState:
        """Its deployed models oldest first, and its traffic split, as Vertex has them now."""
        # Read as raw protobuf: once the process has parsed a long-running operation's
        # `Any`, proto-plus may hand nested messages back unwrapped, timestamps included.
        endpoint = aiplatform_v1.Endpoint.pb(self._endpoints.get_endpoint(name=endpoint_name))
        deployed = sorted(
            endpoint.deployed_models,
            key=lambda d: (d.create_time.seconds, d.create_time.nanos, d.id),
        )
        return EndpointState(
            deployed=tuple(d.id for d in deployed), traffic=dict(endpoint.traffic_split)
        )

    def upload(self, artifact_uri: str, display_name: str) -> str:
        """Uploads a SavedModel directory as a Model served by the serving image; its name."""
        model = aiplatform_v1.Model(
            display_name=display_name,
            artifact_uri=artifact_uri,
            container_spec=aiplatform_v1.ModelContainerSpec(image_uri=self.settings.serving_image),
        )
        operation = self._models.upload_model(parent=self.settings.parent, model=model)
        return operation.result(timeout=OPERATION_TIMEOUT_SECONDS).model

    def apply(self, endpoint_name: str, plan: Plan, model: str = "") -> str:
        """Deploys `model` (when the plan deploys), sets the traffic, undeploys; the new id.

        The new model is deployed before anything is undeployed, so the
        endpoint never lacks a model that can take the traffic.
        """
        deployed_id = ""
        if plan.deploys:
            deployed_id = self._deploy(endpoint_name, model, plan.traffic)
        elif _shares(plan.traffic) != _shares(self.state(endpoint_name).traffic):
            self._endpoints.update_endpoint(
                endpoint=aiplatform_v1.Endpoint(
                    name=endpoint_name, traffic_split=_shares(plan.traffic)
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]),
            )
        for undeployed in plan.undeploy:
            self._endpoints.undeploy_model(
                endpoint=endpoint_name, deployed_model_id=undeployed
            ).result(timeout=OPERATION_TIMEOUT_SECONDS)
        return deployed_id

    def _deploy(self, endpoint_name: str, model: str, traffic: Dict[str, int]) -> str:
        if not model:
            raise ValueError(f"the plan deploys a new model ({NEW_MODEL!r}) but none was uploaded")
        settings = self.settings
        deployed_model = aiplatform_v1.DeployedModel(
            model=model,
            display_name=settings.endpoint_name,
            service_account=settings.service_account,
            dedicated_resources=aiplatform_v1.DedicatedResources(
                machine_spec=aiplatform_v1.MachineSpec(machine_type=settings.serving_machine_type),
                min_replica_count=settings.serving_min_replicas,
                max_replica_count=settings.serving_max_replicas,
            ),
        )
        operation = self._endpoints.deploy_model(
            endpoint=endpoint_name, deployed_model=deployed_model, traffic_split=_shares(traffic)
        )
        return operation.result(timeout=OPERATION_TIMEOUT_SECONDS).deployed_model.id


def _shares(traffic: Dict[str, int]) -> Dict[str, int]:
    """The split without zero entries: Vertex gives an unlisted model no traffic."""
    return {model: share for model, share in traffic.items() if share > 0}


def _credentials(api_endpoint: str) -> Optional[auth_credentials.Credentials]:
    """Application default credentials, except for a plaintext (local) stand-in.

    Google's endpoints are HTTPS only, so an http:// endpoint is a local
    control plane that must not receive real tokens.
    """
    if api_endpoint.startswith("http://"):
        return auth_credentials.AnonymousCredentials()
    return None
