"""Compares the agents on the MovieLens simulator: a Markdown table and PNG plots.

For each number of arms and each agent: simulate uniformly logged events,
split them 4:1, train the agent on the train part with the trainer's own code,
export it with PolicySaver, and evaluate the exported policy with the policy
evaluator's own code on the eval part. Reported per agent: the exact average
reward over the simulator's users and the regret against the oracle (the
same exact expectation the evaluator calls the true value), the four
off-policy estimates with their 95% intervals next to that true value, and
the training time.
"""

import dataclasses
import json
import pathlib
import tempfile
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.figure import Figure

from bandit_core.agent_names import AGENTS
from bandit_core.logged_examples import LoggedColumns
from custom_components.bandit_trainer import training
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.movielens_generator.logged_data import LoggedBatch, simulate_uniform_logging
from custom_components.policy_evaluator import evaluation, ope
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.policy_evaluator.target_policy import SavedPolicy
from simulation import movielens_environment
from simulation.bandit_loader import load_movielens_bandit

TABLE_FILE = "agent_report.md"
JSON_FILE = "agent_report.json"
VALUES_PLOT = "agent_values.png"
OPE_PLOT = "ope_vs_truth.png"
TIME_PLOT = "training_time.png"
EVAL_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class AgentResult:
    """One agent at one number of arms."""

    num_actions: int
    agent: str
    average_reward: float
    regret: float
    oracle_value: float
    uniform_random_value: float
    estimates: Dict[str, ope.Estimate]
    training_seconds: float
    train_rows: int
    eval_rows: int

    @property
    def fraction_of_oracle(self) -> float:
        return self.average_reward / self.oracle_value


def split_logged(
    logged: LoggedBatch, seed: int, eval_fraction: float = EVAL_FRACTION
) -> Tuple[LoggedColumns, np.ndarray]:
    """(eval columns as the trainer reads them, boolean mask of the train rows).

    A seeded random split, like ExampleGen's hash split but without a pipeline.
    """
    in_eval = np.random.default_rng(seed).random(len(logged)) < eval_fraction
    columns = LoggedColumns(
        logged.observations[in_eval].astype(np.float32),
        logged.actions[in_eval],
        logged.rewards[in_eval].astype(np.float32),
        logged.propensities[in_eval].astype(np.float32),
    )
    return columns, ~in_eval


def run_agents(
    movielens_dir: Union[str, pathlib.Path],
    arms: Sequence[int] = (20, 100),
    agent_names: Sequence[str] = AGENTS,
    rank_k: int = 20,
    num_events: int = 100_000,
    seed: int = 0,
    settings: Optional[Mapping[str, TrainerSettings]] = None,
    evaluation_settings: EvaluatorSettings = EvaluatorSettings(),
) -> List[AgentResult]:
    """Trains and evaluates every agent at every number of arms.

    Args:
      movielens_dir: MovieLens 100K directory ("" for the default location).
      arms: numbers of arms (the first movies) to compare at.
      agent_names: agents to run, in table order.
      rank_k: SVD rank, i.e. the observation dimension.
      num_events: uniformly logged events per number of arms.
      seed: seeds the logging, the split, training and evaluation.
      settings: per-agent trainer settings; default `TrainerSettings(agent=...)`.
      evaluation_settings: the evaluator's estimation settings.
    """
    results = []
    with tempfile.TemporaryDirectory(prefix="agent-report-") as work_dir:
        for num_actions in arms:
            bandit = load_movielens_bandit(movielens_dir, rank_k, num_actions)
            logged = simulate_uniform_logging(bandit, num_events, seed)
            columns, train = split_logged(logged, seed)
            for name in agent_names:
                agent_settings = (settings or {}).get(name) or TrainerSettings(
                    agent=name, seed=seed
                )
                trained = training.train_policy(
                    agent_settings,
                    logged.observations[train].astype(np.float32),
                    logged.actions[train],
                    logged.rewards[train].astype(np.float32),
                    num_actions,
                )
                policy_dir = str(pathlib.Path(work_dir) / f"{num_actions}-{name}")
                training.save_policy(trained, policy_dir)
                evaluated = evaluation.evaluate(
                    lambda _: columns,
                    SavedPolicy(policy_dir),
                    None,
                    evaluation_settings,
                    bandit=bandit,
                )
                value = evaluated.candidate.true_value
                oracle = movielens_environment.oracle_value(bandit)
                results.append(
                    AgentResult(
                        num_actions=num_actions,
                        agent=name,
                        average_reward=value,
                        regret=oracle - value,
                        oracle_value=oracle,
                        uniform_random_value=movielens_environment.uniform_random_value(bandit),
                        estimates=evaluated.candidate.estimates,
                        training_seconds=trained.training_seconds,
                        train_rows=int(train.sum()),
                        eval_rows=evaluated.eval_rows,
                    )
                )
    return results


def estimate_cells(estimates: Mapping[str, ope.Estimate]) -> str:
    """The four estimates as Markdown cells: "value [lower, upper]" each."""
    return " | ".join(
        f"{e.value:.3f} [{e.lower:.3f}, {e.upper:.3f}]"
        for e in (estimates[name] for name in ope.ESTIMATORS)
    )


def reference_rows(group: int, uniform_value: float, oracle_value: float, empty: int) -> List[str]:
    """Uniform random's and the oracle's rows: value, regret, % of oracle, `empty` blank cells."""
    return [
        f"| {group} | {label} | {value:.4f} | {oracle_value - value:.4f} "
        f"| {value / oracle_value:.1%} |" + " |" * empty
        for label, value in (("uniform random", uniform_value), ("oracle", oracle_value))
    ]


def markdown_table(results: Sequence[AgentResult]) -> str:
    """One row per agent and number of arms, plus random and oracle per arm count."""
    lines = [
        "| arms | policy | average reward (true value) | regret | % of oracle "
        "| IPS | SNIPS | DM | DR | training s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for num_actions in dict.fromkeys(r.num_actions for r in results):
        rows = [r for r in results if r.num_actions == num_actions]
        for r in rows:
            lines.append(
                f"| {num_actions} | {r.agent} | {r.average_reward:.4f} | {r.regret:.4f} "
                f"| {r.fraction_of_oracle:.1%} | {estimate_cells(r.estimates)} "
                f"| {r.training_seconds:.2f} |"
            )
        first = rows[0]
        lines += reference_rows(num_actions, first.uniform_random_value, first.oracle_value, 5)
    return "\n".join(lines) + "\n"


def _plot_values(results: Sequence[AgentResult], path: pathlib.Path) -> None:
    arm_counts = list(dict.fromkeys(r.num_actions for r in results))
    figure = Figure(figsize=(6 * len(arm_counts), 4))
    axes = figure.subplots(1, len(arm_counts), squeeze=False)
    for ax, num_actions in zip(axes[0], arm_counts):
        rows = [r for r in results if r.num_actions == num_actions]
        bars = ax.bar([r.agent for r in rows], [r.average_reward for r in rows], color="tab:blue")
        ax.bar_label(bars, labels=[f"{r.fraction_of_oracle:.1%}" for r in rows], padding=2)
        ax.axhline(rows[0].oracle_value, color="tab:green", linestyle="--", label="oracle")
        ax.axhline(
            rows[0].uniform_random_value, color="tab:red", linestyle=":", label="uniform random"
        )
        ax.set_title(f"{num_actions} arms: average reward on the simulator")
        ax.set_ylabel("expected reward per user (label: % of oracle)")
        ax.tick_params(axis="x", rotation=20)
        ax.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _plot_ope(results: Sequence[AgentResult], path: pathlib.Path) -> None:
    arm_counts = list(dict.fromkeys(r.num_actions for r in results))
    figure = Figure(figsize=(7 * len(arm_counts), 4))
    axes = figure.subplots(1, len(arm_counts), squeeze=False)
    offsets = np.linspace(-0.3, 0.3, len(ope.ESTIMATORS))
    for ax, num_actions in zip(axes[0], arm_counts):
        rows = [r for r in results if r.num_actions == num_actions]
        positions = np.arange(len(rows))
        for offset, name in zip(offsets, ope.ESTIMATORS):
            values = np.array([r.estimates[name].value for r in rows])
            errors = np.array(
                [[r.estimates[name].value - r.estimates[name].lower,
                  r.estimates[name].upper - r.estimates[name].value] for r in rows]
            ).T
            ax.errorbar(positions + offset, values, yerr=errors, fmt="o", capsize=3,
                        label=name.upper())
        ax.scatter(positions, [r.average_reward for r in rows], marker="_", s=900, color="black",
                   label="true value", zorder=3)
        ax.set_xticks(positions, [r.agent for r in rows], rotation=20)
        ax.set_title(f"{num_actions} arms: off-policy estimates (95% CI) vs truth")
        ax.set_ylabel("policy value")
        ax.legend(fontsize="small", loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _plot_training_time(results: Sequence[AgentResult], path: pathlib.Path) -> None:
    labels = [f"{r.agent}\n{r.num_actions} arms" for r in results]
    figure = Figure(figsize=(max(6, 1.1 * len(results)), 4))
    ax = figure.subplots()
    ax.bar(labels, [r.training_seconds for r in results], color="tab:purple")
    ax.set_yscale("log")
    ax.set_ylabel("training seconds (log scale)")
    ax.set_title(f"Off-policy training time on {results[0].train_rows:,} logged rows")
    ax.tick_params(axis="x", labelsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_report(
    results: Sequence[AgentResult], out_dir: Union[str, pathlib.Path]
) -> Dict[str, str]:
    """Writes the table, the JSON and the plots; returns their paths by kind."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "table": out / TABLE_FILE,
        "json": out / JSON_FILE,
        "values_plot": out / VALUES_PLOT,
        "ope_plot": out / OPE_PLOT,
        "time_plot": out / TIME_PLOT,
    }
    paths["table"].write_text(markdown_table(results))
    paths["json"].write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    _plot_values(results, paths["values_plot"])
    _plot_ope(results, paths["ope_plot"])
    _plot_training_time(results, paths["time_plot"])
    return {kind: str(path) for kind, path in paths.items()}


def write_agent_report(
    out_dir: Union[str, pathlib.Path],
    movielens_dir: Union[str, pathlib.Path],
    arms: Sequence[int] = (20, 100),
    agent_names: Sequence[str] = AGENTS,
    rank_k: int = 20,
    num_events: int = 100_000,
    seed: int = 0,
    settings: Optional[Mapping[str, TrainerSettings]] = None,
) -> Dict[str, str]:
    """Runs every agent (see `run_agents`) and writes the report into `out_dir`.

    The entry point for the report command; a full run (4 agents, 20 and 100
    arms, 100,000 events) takes a few minutes on 2 cores.

    Returns the written files' paths: table (Markdown), json, values_plot,
    ope_plot and time_plot (PNG).
    """
    results = run_agents(
        movielens_dir, arms, agent_names, rank_k, num_events, seed, settings
    )
    return write_report(results, out_dir)
