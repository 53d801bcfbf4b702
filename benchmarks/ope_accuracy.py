"""Accuracy of the off-policy estimators against the simulator's true values.

For each seed: simulate uniformly logged MovieLens interactions, split them
4:1, train target policies on the train part, then run the policy evaluator's
own `evaluation.evaluate` on the eval part (cross-fitted reward model, 95%
bootstrap intervals) and compare every estimate with the policy's exact value
on the simulator. Two targets per seed: LinUCB on the whole train part
(near-optimal) and LinUCB on its first 300 rows (a weaker policy that agrees
less with the data). Prints mean relative error |estimate - truth| / truth,
mean signed error (bias) and interval coverage per estimator.

Usage: .venv/bin/python benchmarks/ope_accuracy.py [--seeds 20] [--events 100000]
       [--actions 20] [--rank 20] [--movielens-dir DIR]
"""

import argparse
import tempfile
from typing import Dict, List

import numpy as np

from custom_components.bandit_trainer import training
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.movielens_generator.logged_data import simulate_uniform_logging
from custom_components.policy_evaluator import evaluation, ope
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.policy_evaluator.target_policy import SavedPolicy
from simulation.bandit_loader import load_movielens_bandit
from tfx_pipeline.reports.agent_report import split_logged

WEAK_TRAIN_ROWS = 300


def evaluate_seed(bandit, events: int, seed: int, work_dir: str) -> Dict[str, dict]:
    """{target: {"truth": v, estimator: Estimate}} for one logged data set."""
    logged = simulate_uniform_logging(bandit, events, seed)
    columns, train = split_logged(logged, seed)
    x, a, r = logged.observations[train], logged.actions[train], logged.rewards[train]
    targets = {"LinUCB (all train rows)": slice(None), f"LinUCB ({WEAK_TRAIN_ROWS} rows)":
               slice(WEAK_TRAIN_ROWS)}
    results = {}
    for name, rows in targets.items():
        trained = training.train_policy(
            TrainerSettings(), x[rows], a[rows], r[rows], bandit.num_actions
        )
        policy_dir = tempfile.mkdtemp(dir=work_dir)
        training.save_policy(trained, policy_dir)
        result = evaluation.evaluate(
            lambda _: columns,
            SavedPolicy(policy_dir),
            None,
            EvaluatorSettings(seed=seed),
            bandit=bandit,
        )
        results[name] = {"truth": result.candidate.true_value, **result.candidate.estimates}
    return results


def summarize(runs: List[Dict[str, dict]]) -> None:
    for target in runs[0]:
        truths = np.array([run[target]["truth"] for run in runs])
        print(f"\n{target}: true value {truths.mean():.4f} (mean over {len(runs)} seeds)")
        print(f"{'estimator':<10}{'mean rel. error':>17}{'max rel. error':>16}"
              f"{'mean signed error':>19}{'95% CI coverage':>17}")
        for name in ope.ESTIMATORS:
            estimates: List[ope.Estimate] = [run[target][name] for run in runs]
            values = np.array([e.value for e in estimates])
            relative = np.abs(values - truths) / np.abs(truths)
            covered = np.mean([e.lower <= t <= e.upper for e, t in zip(estimates, truths)])
            print(f"{name.upper():<10}{relative.mean():>17.2%}{relative.max():>16.2%}"
                  f"{np.mean(values - truths):>+19.4f}{covered:>17.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--actions", type=int, default=20)
    parser.add_argument("--rank", type=int, default=20)
    parser.add_argument("--movielens-dir", default="")
    args = parser.parse_args()
    bandit = load_movielens_bandit(args.movielens_dir, args.rank, args.actions)
    print(f"OPE accuracy on MovieLens 100K, rank {args.rank}, {args.actions} arms, "
          f"{args.events} uniformly logged events per seed (eval split ~{args.events // 5})")
    with tempfile.TemporaryDirectory() as work_dir:
        runs = [evaluate_seed(bandit, args.events, seed, work_dir) for seed in range(args.seeds)]
    summarize(runs)


if __name__ == "__main__":
    main()
