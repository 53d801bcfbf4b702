"""The sidecar: classic sidecars unchanged by the per-arm fields, per-arm ones round-trip."""

import json

from bandit_core.policy_metadata import (
    PER_ARM,
    POLICY_METADATA_FILE,
    PolicyMetadata,
    read_policy_metadata,
    write_policy_metadata,
)

_OLD_SIDECAR = {
    "agent": "LinUCB", "observation_dim": 20, "num_actions": 20, "alpha": 1.0,
    "tikhonov_weight": 1.0, "stochastic": False, "hyperparameters": {},
}


def test_a_classic_sidecar_is_written_as_before_and_old_ones_load(tmp_path):
    write_policy_metadata(str(tmp_path), PolicyMetadata("LinUCB", 20, 20, 1.0, 1.0))
    assert json.loads((tmp_path / POLICY_METADATA_FILE).read_text()) == _OLD_SIDECAR
    assert read_policy_metadata(str(tmp_path)).problem == "classic"


def test_a_per_arm_sidecar_round_trips(tmp_path):
    metadata = PolicyMetadata(
        "PerArmLinTS", 4, 5, 2.0, 1.0, True, {}, PER_ARM, global_dim=4, arm_dim=3,
        num_candidates=5, epsilon=0.0,
    )
    write_policy_metadata(str(tmp_path), metadata)
    assert read_policy_metadata(str(tmp_path)) == metadata
