"""Compares the per-arm agents on the per-arm MovieLens simulator: a Markdown table.

Each round offers one user `num_candidates` movies drawn from all 1,682. A
uniform-random logging policy serves one candidate per round (propensity
1 / C) and records its noisy rating; the rows are split 4:1. Each agent trains
on the train rows with the trainer's own code, is exported as the trainer
exports it (SavedModel, sidecar, item catalogue) and is then judged twice:

* its true value: the simulator's expected reward of the candidates it picks
  on fresh rounds, next to the oracle's (the best candidate of each round);
* its off-policy estimates on the eval rows (IPS, SNIPS, DM, DR over the
  logged candidate sets, with bootstrap intervals), next to that true value.

TF-Agents' own per-arm LinUCB, trained batch by batch with `agent.train`, is
the anchor row: the project's per-arm LinUCB must match it.
"""

import dataclasses
import pathlib
import tempfile
import time
from typing import Callable, Dict, List, Sequence, Union

import numpy as np
import tensorflow as tf
from tf_agents.bandits.agents import lin_ucb_agent

from bandit_core import agent_names
from bandit_core.item_catalogue import ItemCatalogue
from bandit_core.saved_policy import load_saved_policy
from custom_components.bandit_trainer import per_arm_agents
from custom_components.bandit_trainer.per_arm_export import save_per_arm_policy
from custom_components.bandit_trainer.per_arm_training import train_per_arm_policy
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.movielens_generator.per_arm_logged_data import (
    simulate_uniform_per_arm_logging,
)
from custom_components.policy_evaluator import candidate_sets, ope, per_arm_target_policy
from custom_components.policy_evaluator.per_arm_target_policy import Policy
from simulation import movielens_per_arm
from tfx_pipeline.reports.agent_report import estimate_cells, reference_rows

TABLE_FILE = "per_arm_report.md"
TF_AGENTS_ANCHOR = "TF-Agents PerArmLinUCB (agent.train)"
DEFAULT_AGENTS = (
    agent_names.PER_ARM_LINUCB,
    agent_names.INTERACTION_LINUCB,
    agent_names.INTERACTION_LINTS,
    agent_names.PER_ARM_NEURAL_LINUCB,
    agent_names.PER_ARM_NEURAL_EPSILON_GREEDY,
    agent_names.DOT_PRODUCT_EPSILON_GREEDY,
)
EVAL_FRACTION = 0.2
# Draws averaged into pi for the stochastic policies (LinTS, epsilon-greedy).
_POLICY_SAMPLES = 16
_ANCHOR_BATCH = 1024



@dataclasses.dataclass(frozen=True)
class PerArmAgentResult:
    """One agent's true value, estimates and cost at one candidate-set size."""

    agent: str
    num_candidates: int
    true_value: float
    oracle_value: float
    uniform_random_value: float
    estimates: Dict[str, ope.Estimate]
    training_seconds: float
    train_rows: int
    eval_rows: int

    @property
    def fraction_of_oracle(self) -> float:
        return self.true_value / self.oracle_value

    @property
    def regret(self) -> float:
        return self.oracle_value - self.true_value


def train_tf_agents_anchor(
    global_features: np.ndarray,
    chosen_arm_features: np.ndarray,
    rewards: np.ndarray,
    num_candidates: int,
    settings: TrainerSettings,
):
    """TF-Agents' per-arm LinUCB trained by its own `agent.train`, batch by batch."""
    time_step_spec, action_spec = per_arm_agents.per_arm_specs(
        global_features.shape[1], chosen_arm_features.shape[1], num_candidates
    )
    agent = lin_ucb_agent.LinearUCBAgent(
        time_step_spec=time_step_spec,
        action_spec=action_spec,
        alpha=settings.alpha,
        tikhonov_weight=settings.tikhonov_weight,
        accepts_per_arm_features=True,
        dtype=tf.float32,
    )
    agent.initialize()

    @tf.function
    def train(u, v, r):
        return agent.train(per_arm_agents.per_arm_trajectory(u, v, r)).loss

    for start in range(0, len(rewards), _ANCHOR_BATCH):
        rows = slice(start, start + _ANCHOR_BATCH)
        train(
            tf.constant(global_features[rows], tf.float32),
            tf.constant(chosen_arm_features[rows], tf.float32),
            tf.constant(rewards[rows], tf.float32),
        )
    return agent


def run_per_arm_agents(
    movielens_dir: Union[str, pathlib.Path],
    num_candidates: int = 50,
    agents: Sequence[str] = DEFAULT_AGENTS,
    rank_k: int = 20,
    num_events: int = 100_000,
    noise_sd: float = 1.0,
    eval_rounds: int = 20_000,
    seed: int = 0,
    settings: TrainerSettings = TrainerSettings(),
    with_anchor: bool = True,
    bootstrap_samples: int = 200,
    on_result: Callable[[PerArmAgentResult], None] = lambda result: None,
) -> List[PerArmAgentResult]:
    """Trains and judges every per-arm agent; see the module docstring.

    Args:
      movielens_dir: MovieLens 100K directory ("" for the default location).
      num_candidates: C, candidates per round, up to the whole catalogue.
      agents: per-arm agent names, in table order.
      rank_k: SVD rank, the dimension of user and movie vectors.
      num_events: uniformly logged rounds.
      noise_sd: standard deviation of the rating noise on logged rewards.
      eval_rounds: fresh rounds the true values are measured on.
      seed: seeds logging, the split, training and the fresh rounds.
      settings: hyper-parameters shared by all agents (its `agent` is ignored).
      with_anchor: also train TF-Agents' per-arm LinUCB with `agent.train`.
      bootstrap_samples: replicates of each estimate's interval.
      on_result: called with each result as soon as it exists.
    """
    bandit = movielens_per_arm.load_per_arm_bandit(movielens_dir, rank_k)
    logged = simulate_uniform_per_arm_logging(bandit, num_events, num_candidates, noise_sd, seed)
    in_eval = np.random.default_rng([seed, 10]).random(len(logged)) < EVAL_FRACTION
    train, held = ~in_eval, in_eval
    train_global = logged.global_features[train].astype(np.float32)
    train_arms = movielens_per_arm.arm_features(bandit, logged.movie_ids[train]).astype(np.float32)
    train_rewards = logged.rewards[train].astype(np.float32)
    eval_global = logged.global_features[held]
    eval_arms = movielens_per_arm.arm_features(bandit, logged.candidate_ids[held])
    eval_data = ope.validate_logged_data(
        logged.chosen_slots[held], logged.rewards[held], logged.propensities[held], num_candidates
    )
    reward_predictions = candidate_sets.cross_fitted_candidate_predictions(
        eval_global, eval_arms, logged.chosen_slots[held], logged.rewards[held], seed=seed
    )
    fresh = movielens_per_arm.sample_round(
        bandit, eval_rounds, num_candidates, np.random.default_rng([seed, 20])
    )
    fresh_global = movielens_per_arm.global_features(bandit, fresh.user_ids)
    fresh_arms = movielens_per_arm.arm_features(bandit, fresh.candidate_ids)
    oracle = movielens_per_arm.oracle_value(bandit, fresh.user_ids, fresh.candidate_ids)
    uniform = movielens_per_arm.uniform_random_value(bandit, fresh.user_ids, fresh.candidate_ids)

    def judge(name: str, policy: Policy, draws: int, seconds: float) -> PerArmAgentResult:
        chosen = np.argmax(
            per_arm_target_policy.in_blocks(policy, fresh_global, fresh_arms, 1), axis=1
        )
        pi = per_arm_target_policy.in_blocks(policy, eval_global, eval_arms, draws)
        result = PerArmAgentResult(
            agent=name,
            num_candidates=num_candidates,
            true_value=movielens_per_arm.policy_value(
                bandit, fresh.user_ids, fresh.candidate_ids, chosen
            ),
            oracle_value=oracle,
            uniform_random_value=uniform,
            estimates=ope.off_policy_estimates(
                pi, eval_data, reward_predictions, bootstrap_samples, seed=seed
            ),
            training_seconds=seconds,
            train_rows=int(train.sum()),
            eval_rows=int(held.sum()),
        )
        on_result(result)
        return result

    results = []
    rng = np.random.default_rng([seed, 30])
    movie_ids = np.arange(1, bandit.num_movies + 1)
    catalogue = ItemCatalogue(
        movie_ids,
        movielens_per_arm.arm_features(bandit, movie_ids),
        movielens_per_arm.item_feature_version(rank_k),
    )
    with tempfile.TemporaryDirectory(prefix="per-arm-report-") as work_dir:
        for name in agents:
            trained = train_per_arm_policy(
                dataclasses.replace(settings, agent=name, seed=seed),
                train_global,
                train_arms,
                train_rewards,
                num_candidates,
            )
            policy_dir = str(pathlib.Path(work_dir) / name)
            save_per_arm_policy(trained, catalogue, policy_dir)
            if trained.statistics is not None:
                policy = per_arm_target_policy.linear_policy_probabilities(
                    name,
                    trained.statistics.cov_matrix,
                    trained.statistics.data_vector,
                    settings.tikhonov_weight,
                    settings.alpha,
                    rng,
                )
                stochastic = name in (agent_names.PER_ARM_LINTS, agent_names.INTERACTION_LINTS)
            else:
                policy = per_arm_target_policy.saved_policy_probabilities(
                    name, load_saved_policy(policy_dir)
                )
                stochastic = name != agent_names.PER_ARM_NEURAL_LINUCB
            draws = _POLICY_SAMPLES if stochastic else 1
            results.append(judge(name, policy, draws, trained.training_seconds))
    if with_anchor:
        started = time.perf_counter()
        anchor = train_tf_agents_anchor(
            train_global, train_arms, train_rewards, num_candidates, settings
        )
        seconds = time.perf_counter() - started
        policy = per_arm_target_policy.saved_policy_probabilities(
            agent_names.PER_ARM_LINUCB, anchor.policy
        )
        results.append(judge(TF_AGENTS_ANCHOR, policy, 1, seconds))
    return results


def markdown_table(results: Sequence[PerArmAgentResult]) -> str:
    """One row per agent, then uniform random and the oracle, per candidate-set size."""
    lines = [
        "| candidates | policy | true value | regret | % of oracle | IPS | SNIPS | DM | DR "
        "| DR error | training s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in dict.fromkeys(r.num_candidates for r in results):
        rows = [r for r in results if r.num_candidates == size]
        for r in rows:
            dr_error = (r.estimates["dr"].value - r.true_value) / abs(r.true_value)
            lines.append(
                f"| {size} | {r.agent} | {r.true_value:.4f} | {r.regret:.4f} "
                f"| {r.fraction_of_oracle:.1%} | {estimate_cells(r.estimates)} "
                f"| {dr_error:+.1%} | {r.training_seconds:.2f} |"
            )
        first = rows[0]
        lines += reference_rows(size, first.uniform_random_value, first.oracle_value, 6)
    return "\n".join(lines) + "\n"


def write_per_arm_report(
    out_dir: Union[str, pathlib.Path],
    movielens_dir: Union[str, pathlib.Path],
    num_candidates: int = 50,
    num_events: int = 100_000,
    on_result: Callable[[PerArmAgentResult], None] = lambda result: None,
) -> pathlib.Path:
    """Runs every per-arm agent (see `run_per_arm_agents`) and writes the Markdown table."""
    results = run_per_arm_agents(
        movielens_dir, num_candidates=num_candidates, num_events=num_events, on_result=on_result
    )
    path = pathlib.Path(out_dir) / TABLE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_table(results))
    return path
