"""Off-policy LinUCB training throughput: our trainer vs TF-Agents' agent.train.

Our trainer sums per-arm sufficient statistics in one vectorised pass and
loads them into a TF-Agents LinearUCBAgent; the baseline, measured in the same
run on the same machine, is `LinearUCBAgent.train` inside a `tf.function` at
batch sizes 8 and 1024 (the first, tracing, batch is trained on but not
timed). The baseline is slow (about 10^2..10^3 rows/s at 100 arms), so it is
timed on a prefix of the rows; our trainer is timed on all of them. The check
that both produce the same policy trains ours on exactly the baseline's rows
and compares A_a, b_a, theta and the UCB actions on held-out contexts.

Usage: .venv/bin/python benchmarks/trainer_throughput.py [--rows 100000] [--dim 20]
       [--actions 100] [--baseline-rows 8=2000,1024=20480] [--repeats 5]
"""

import argparse
import statistics as stats
import time
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf
from tf_agents.bandits.agents import lin_ucb_agent, linear_bandit_agent
from tf_agents.trajectories import time_step as ts

from bandit_core.linear_statistics import arm_statistics
from custom_components.bandit_trainer import agents, training
from custom_components.bandit_trainer.neural_training import bandit_trajectory
from custom_components.bandit_trainer.settings import TrainerSettings

ALPHA = TIKHONOV = 1.0


def logged_rows(n: int, d: int, k: int, seed: int = 0):
    """Uniformly logged rows of a linear bandit: [N, d] float32, [N], [N] float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    a = rng.integers(0, k, size=n)
    theta = rng.normal(size=(k, d))
    r = np.einsum("nd,nd->n", x, theta[a]) + rng.normal(scale=0.5, size=n)
    return x, a, r.astype(np.float32)


def time_ours(x, a, r, k: int, repeats: int) -> Dict[str, float]:
    """Median seconds of the statistics pass and of the whole train_policy."""
    settings = TrainerSettings(agent="LinUCB", alpha=ALPHA, tikhonov_weight=TIKHONOV)
    training.train_policy(settings, x[:1000], a[:1000], r[:1000], k)  # warm-up
    statistics_seconds, total_seconds = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        arm_statistics(x, a, r, k)
        statistics_seconds.append(time.perf_counter() - started)
        total_seconds.append(training.train_policy(settings, x, a, r, k).training_seconds)
    return {"statistics": stats.median(statistics_seconds), "train": stats.median(total_seconds)}


def train_reference(x, a, r, k: int, batch_size: int) -> Tuple[lin_ucb_agent.LinearUCBAgent, float]:
    """TF-Agents' own training; returns the agent and rows/s over the timed batches."""
    time_step_spec, action_spec = agents.bandit_specs(x.shape[1], k)
    variables = linear_bandit_agent.LinearBanditVariableCollection(
        context_dim=x.shape[1], num_models=k, dtype=tf.float32
    )
    agent = lin_ucb_agent.LinearUCBAgent(
        time_step_spec, action_spec, variable_collection=variables, alpha=ALPHA,
        tikhonov_weight=TIKHONOV, dtype=tf.float32,
    )
    agent.initialize()
    train_step = tf.function(lambda x, a, r: agent.train(bandit_trajectory(x, a, r)).loss)
    batches = [
        (tf.constant(x[i : i + batch_size]), tf.constant(a[i : i + batch_size], tf.int32),
         tf.constant(r[i : i + batch_size]))
        for i in range(0, len(a), batch_size)
    ]
    train_step(*batches[0]).numpy()
    started = time.perf_counter()
    for batch in batches[1:]:
        loss = train_step(*batch)
    loss.numpy()
    seconds = time.perf_counter() - started
    return agent, (len(a) - len(batches[0][1])) / seconds


def same_policy(reference, x, a, r, k: int) -> Dict[str, float]:
    """How far our agent on the same rows is from the reference agent."""
    ours = agents.linucb_agent_from_statistics(arm_statistics(x, a, r, k), ALPHA, TIKHONOV)

    def stacked(agent, name):
        return np.stack([v.numpy() for v in getattr(agent, name)]).astype(np.float64)

    def rel(u, v):
        return float(np.max(np.abs(u - v)) / np.max(np.abs(v)))

    queries = np.random.default_rng(1).normal(size=(2000, x.shape[1])).astype(np.float32)
    step = ts.restart(tf.constant(queries), batch_size=len(queries))
    theta = lambda agent: agent._variable_collection.theta.numpy().astype(np.float64)  # noqa: E731
    return {
        "A": rel(stacked(ours, "cov_matrix"), stacked(reference, "cov_matrix")),
        "b": rel(stacked(ours, "data_vector"), stacked(reference, "data_vector")),
        "theta": rel(theta(ours), theta(reference)),
        "actions_equal": float(
            np.mean(
                ours.policy.action(step).action.numpy()
                == reference.policy.action(step).action.numpy()
            )
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--actions", type=int, default=100)
    parser.add_argument("--baseline-rows", default="8=2000,1024=20480",
                        help="batch=rows pairs for agent.train")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    baselines = {int(b): int(n) for b, n in (p.split("=") for p in args.baseline_rows.split(","))}
    x, a, r = logged_rows(args.rows, args.dim, args.actions)

    ours = time_ours(x, a, r, args.actions, args.repeats)
    ours_rate = args.rows / ours["train"]
    print(f"\nOff-policy LinUCB training, d={args.dim}, K={args.actions}, {args.rows} rows")
    print(f"{'trainer':<44}{'rows':>8}{'rows/s':>14}{'ours is x faster':>18}")
    statistics_rate = args.rows / ours["statistics"]
    print(f"{'ours: statistics pass only':<44}{args.rows:>8}{statistics_rate:>14,.0f}")
    print(f"{'ours: statistics + load into LinearUCBAgent':<44}{args.rows:>8}{ours_rate:>14,.0f}")
    checks = {}
    for batch_size, rows in sorted(baselines.items()):
        reference, rate = train_reference(x[:rows], a[:rows], r[:rows], args.actions, batch_size)
        print(f"{f'agent.train in tf.function, batch {batch_size}':<44}{rows:>8}{rate:>14,.0f}"
              f"{ours_rate / rate:>18,.0f}")
        checks[batch_size] = same_policy(reference, x[:rows], a[:rows], r[:rows], args.actions)
    print("\nSame policy (ours vs agent.train on the same rows; max relative difference):")
    for batch_size, check in checks.items():
        print(f"  batch {batch_size:>5}: A {check['A']:.1e}, b {check['b']:.1e}, "
              f"theta {check['theta']:.1e}, identical UCB actions {check['actions_equal']:.2%}")


if __name__ == "__main__":
    main()
