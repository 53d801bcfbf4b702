"""The per-arm agents on the per-arm MovieLens problem, side by side in one run.

Runs `tfx_pipeline.reports.per_arm_report` (uniform-random logging of
candidate sets drawn from all 1,682 movies, rating noise, a 4:1 split, every
per-arm agent plus TF-Agents' per-arm LinUCB trained by `agent.train`) for
each seed, and prints per agent: true value, % of the oracle, the four
off-policy estimates and DR's relative error, training time. With several
seeds it also prints each agent's mean % of oracle and mean |DR error|.
No fixture runs beside it: the load average printed next to the figures is
the machine's own.

Usage: .venv/bin/python benchmarks/per_arm_agents.py [--candidates 50] [--events 100000]
       [--eval-rounds 20000] [--noise-sd 1.0] [--seeds 1] [--first-seed 0] [--agents A,B,...]
       [--no-anchor] [--movielens-dir DIR]
"""

import argparse
import collections
import os

from custom_components.bandit_trainer.settings import TrainerSettings
from tfx_pipeline.reports import per_arm_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--eval-rounds", type=int, default=20_000)
    parser.add_argument("--noise-sd", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed+seeds-1"
    )
    parser.add_argument("--agents", default=",".join(per_arm_report.DEFAULT_AGENTS))
    parser.add_argument("--no-anchor", action="store_true")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--movielens-dir", default="")
    args = parser.parse_args()

    fractions = collections.defaultdict(list)
    dr_errors = collections.defaultdict(list)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        results = per_arm_report.run_per_arm_agents(
            args.movielens_dir,
            num_candidates=args.candidates,
            agents=args.agents.split(","),
            num_events=args.events,
            noise_sd=args.noise_sd,
            eval_rounds=args.eval_rounds,
            seed=seed,
            settings=TrainerSettings(),
            with_anchor=not args.no_anchor,
            bootstrap_samples=args.bootstrap,
            on_result=lambda r: print(
                f"seed {seed} {r.agent:<40} {r.fraction_of_oracle:6.1%} of oracle  "
                f"DR {r.estimates['dr'].value:.4f} vs true {r.true_value:.4f}  "
                f"train {r.training_seconds:7.2f} s  load {os.getloadavg()[0]:.2f}",
                flush=True,
            ),
        )
        print(per_arm_report.markdown_table(results), flush=True)
        for r in results:
            fractions[r.agent].append(r.fraction_of_oracle)
            dr_errors[r.agent].append(abs(r.estimates["dr"].value - r.true_value) / r.true_value)
    if args.seeds > 1:
        print(f"| agent | mean % of oracle | mean abs DR error ({args.seeds} seeds) |")
        print("| --- | ---: | ---: |")
        for agent in fractions:
            mean_fraction = sum(fractions[agent]) / args.seeds
            mean_error = sum(dr_errors[agent]) / args.seeds
            print(f"| {agent} | {mean_fraction:.1%} | {mean_error:.1%} |")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
