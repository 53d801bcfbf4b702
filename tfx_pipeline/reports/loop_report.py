"""The demo's per-round table, its saved results and the regret plot."""

import dataclasses
import json
import pathlib
from typing import List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from tfx_pipeline.demo_loop.feedback_loop import LoopResult, RoundResult  # noqa: E402

# Next to the plot in the run root, for the notebook and anyone re-plotting.
LOOP_RESULT_FILE = "loop_result.json"


def write_loop_result(result: LoopResult, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(result), indent=2))
    return path


def read_loop_result(path: pathlib.Path) -> LoopResult:
    """The result `write_loop_result` saved."""
    raw = json.loads(pathlib.Path(path).read_text())
    return LoopResult(
        rounds=[RoundResult(**row) for row in raw["rounds"]],
        uniform_random_regret=raw["uniform_random_regret"],
        oracle_reward=raw["oracle_reward"],
    )


def format_round_header() -> str:
    return (
        f"{'round':>5} {'events':>7} {'model version':>14} {'avg reward':>11} "
        f"{'regret':>8} {'vs round 0':>11}  trigger"
    )


def format_round(result: RoundResult, first: RoundResult) -> str:
    improvement = (
        1.0 - result.average_regret / first.average_regret if first.average_regret else 0.0
    )
    return (
        f"{result.round:>5} {result.events:>7} {result.model_version:>14} "
        f"{result.average_reward:>11.4f} {result.average_regret:>8.4f} "
        f"{improvement:>+10.1%}  {result.trigger}"
    )


def plot_regret(result: LoopResult, path: pathlib.Path) -> pathlib.Path:
    """Writes a PNG of average regret per round against uniform random."""
    rounds: List[int] = [r.round for r in result.rounds]
    regrets = [r.average_regret for r in result.rounds]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(rounds, regrets, marker="o", label="served policy (with exploration)")
    axes.axhline(result.uniform_random_regret, color="grey", linestyle="--", label="uniform random")
    axes.set_xlabel("round")
    axes.set_ylabel("average regret per request")
    axes.set_ylim(bottom=0)
    axes.set_xticks(rounds)
    axes.set_title("MovieLens bandit: regret per feedback-loop round")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
