"""The closed loop of the demo: train, serve, simulate, log, retrain, hot reload.

Round 0 serves the policy trained on a small uniform-random batch; every later
round first lets the trigger retrain on all serving logs so far and waits for
the server to hot-reload the pushed policy.
"""

import dataclasses
import datetime
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
from absl import logging

from bandit_core.bigquery import clients
from bandit_core.bigquery.clients import BigQueryEndpoints
from simulation import movielens_per_arm
from simulation.bandit_loader import load_movielens_bandit
from simulation.simulated_users import ClassicUsers, PerArmUsers, SimulatedUsers
from simulation.simulator import run_round
from simulation.trigger import RetrainingTrigger, TriggerDecision
from tfx_pipeline import pipeline
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.demo_loop import serving_logs
from tfx_pipeline.demo_loop.loop_summaries import LoopSummaries
from tfx_pipeline.demo_loop.serving_process import ServingProcess
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.reports import run_summary


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """One row of the demo's per-round table."""

    round: int
    events: int
    model_version: str
    average_reward: float
    average_regret: float
    trigger: str


@dataclasses.dataclass(frozen=True)
class LoopResult:
    rounds: List[RoundResult]
    uniform_random_regret: float
    oracle_reward: float


# (what the loop does now, whether it continues the step shown before)
Progress = Callable[[str, bool], None]


@dataclasses.dataclass
class _CountedUsers:
    """The simulated users, reporting every `every`-th answered request to `on_request`."""

    users: SimulatedUsers
    on_request: Callable[[int], None]
    every: int
    answered: int = 0

    @property
    def num_users(self) -> int:
        return self.users.num_users

    def instance(self, user: int) -> Dict[str, Any]:
        return self.users.instance(user)

    def outcome(
        self, user: int, prediction: Dict[str, Any], rng: np.random.Generator
    ) -> Tuple[float, float]:
        self.answered += 1
        if self.answered % self.every == 0:
            self.on_request(self.answered)
        return self.users.outcome(user, prediction, rng)


def run_feedback_loop(
    config: PipelineConfig,
    endpoints: BigQueryEndpoints,
    on_round: Callable[[RoundResult], None] = lambda _: None,
    on_progress: Progress = lambda text, same_step: None,
) -> LoopResult:
    """Runs the initial training DAG, then `config.loop.rounds` + 1 serving rounds.

    `on_progress` hears what the loop waits for between rounds' results. Each
    round's reward and regret also go to TensorBoard (see `loop_summaries`).
    """
    loop = config.loop
    summaries = LoopSummaries(config.local.root_dir, datetime.datetime.now())
    initial = config.replace(generator={"num_events": loop.initial_events})
    local_runner.run_pipeline(initial, endpoints)
    if not _latest_run_pushed(config, retraining=False):
        raise RuntimeError(
            "the PolicyEvaluator did not bless the initial policy, so there is nothing to serve; "
            f"raise loop.initial_events (now {loop.initial_events}) so the first batch can "
            "show the policy beats the logging policy (see `mlbandits lineage show --type "
            "ModelBlessing` for the reason)"
        )
    users = simulated_users_of(config)
    client = clients.make_bigquery_client(endpoints)
    rewards_table = f"{endpoints.project}.{config.bigquery.dataset}.{config.bigquery.rewards_table}"
    results: List[RoundResult] = []
    on_progress("starting the prediction server", False)
    with ServingProcess(config, endpoints) as server:
        trigger = RetrainingTrigger(
            loop,
            config.local.trigger_dir,
            count_new_events=lambda since: serving_logs.count_rewarded_events(
                client, rewards_table, since
            ),
            retrain=lambda: local_runner.run_pipeline(config, endpoints, retraining=True),
        )
        decision_text = "initial training DAG"
        requests = loop.requests_per_round
        for round_index in range(loop.rounds + 1):
            on_progress(f"round {round_index}: 0/{requests} requests", False)
            counted = _CountedUsers(
                users,
                lambda n, i=round_index: on_progress(f"round {i}: {n}/{requests} requests", True),
                every=max(1, requests // 100),
            )
            report = run_round(
                server.url,
                counted,
                dataclasses.replace(loop, seed=loop.seed + round_index),
                config.serving.predict_route,
                config.serving.reward_route,
            )
            if report.errors:
                raise RuntimeError(
                    f"round {round_index}: {len(report.errors)} requests failed, first: {report.errors[0]}"
                )
            result = RoundResult(
                round=round_index,
                events=report.events,
                model_version=",".join(sorted(report.model_versions)),
                average_reward=report.average_reward,
                average_regret=report.average_regret,
                trigger=decision_text,
            )
            results.append(result)
            summaries.record(round_index, result.average_reward, result.average_regret)
            on_round(result)
            if round_index == loop.rounds:
                break
            expected = _rewarded_so_far(results)
            on_progress(f"round {round_index}: waiting for {expected} rewards in BigQuery", False)
            server.wait_until_logged(client, rewards_table, expected=expected)
            version_before = server.model_version()
            on_progress(f"round {round_index + 1}: checking the retraining trigger", False)
            decision = trigger.check()
            decision_text = _describe(decision)
            if decision.run and _latest_run_pushed(config, retraining=True):
                on_progress(f"round {round_index + 1}: waiting for the server's hot reload", False)
                server.wait_for_version_change(version_before, timeout_s=loop.reload_timeout_s)
            elif decision.run:
                decision_text += ", not blessed: kept serving the previous policy"
    return LoopResult(
        rounds=results,
        uniform_random_regret=users.uniform_random_regret(),
        oracle_reward=users.oracle_value(),
    )


def simulated_users_of(config: PipelineConfig) -> SimulatedUsers:
    """The users of the configured problem, as the Simulator plays them."""
    movielens = config.movielens
    if movielens.per_arm:
        bandit = movielens_per_arm.load_per_arm_bandit(
            movielens.data_dir,
            movielens.rank_k,
            user_demographics=movielens.user_demographics,
            movie_metadata=movielens.movie_metadata,
        )
        return PerArmUsers(bandit, movielens.num_candidates, movielens.noise_sd)
    return ClassicUsers(
        load_movielens_bandit(movielens.data_dir, movielens.rank_k, movielens.num_actions)
    )


def _latest_run_pushed(config: PipelineConfig, retraining: bool) -> bool:
    """Whether the PolicyEvaluator blessed, and so the Pusher pushed, the new policy."""
    summary = run_summary.summarize_latest_run(
        run_summary.open_store(str(config.local.metadata_path)),
        pipeline.pipeline_name(config, retraining),
    )
    return summary.pushed_destination is not None


def _rewarded_so_far(results: List[RoundResult]) -> int:
    return sum(r.events for r in results)


def _describe(decision: TriggerDecision) -> str:
    if not decision.run:
        return f"no retraining: {decision.reason}"
    return f"retrained ({decision.reason}), {decision.outcome}"


def run_demo(
    config: PipelineConfig,
    on_round: Callable[[RoundResult], None],
    on_progress: Progress = lambda text, same_step: None,
) -> LoopResult:
    """The loop with the emulator started and stopped around it."""
    started = time.perf_counter()
    on_progress("starting the BigQuery emulator", False)
    with local_runner.bigquery_endpoints(config) as endpoints:
        result = run_feedback_loop(config, endpoints, on_round, on_progress)
    logging.info("feedback loop finished in %.1f s", time.perf_counter() - started)
    return result
