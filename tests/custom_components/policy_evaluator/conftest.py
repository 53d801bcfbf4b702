"""Trained policies and evaluation rows shared by the executor tests of this package."""

import pytest

from custom_components.bandit_trainer.settings import TrainerSettings
from tests.custom_components.policy_evaluator.linear_logs import log_rows, trained_model


@pytest.fixture(scope="package")
def models(tmp_path_factory):
    """A good policy (LinUCB, id 11) and a bad one (LinTS with huge alpha, id 12)."""
    root = tmp_path_factory.mktemp("models")
    train_rows = log_rows(4000, seed=1)
    return {
        "good": trained_model(root / "good", TrainerSettings(alpha=0.1), train_rows, 11),
        "bad": trained_model(
            root / "bad", TrainerSettings(agent="LinTS", alpha=100.0), train_rows, 12
        ),
    }


@pytest.fixture(scope="package")
def eval_rows():
    return log_rows(3000, seed=2)
