"""The scaling benchmark's arithmetic, table, JSON and plot: pure, so `tests/benchmarks` checks
it without running a DAG.

Memory is attributed by time: an RSS sample belongs to every component whose
MLMD execution window (created -> last updated) contains it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

MB = 1024 * 1024
# A rate over a shorter step measures its fixed cost, not its rows.
MIN_RATE_SECONDS = 1.0
# Issue 11's target: peak RSS of these steps grows at most this much from the baseline size.
MEMORY_TARGET_NODES = ("BanditTrainer", "PolicyEvaluator")
MEMORY_TARGET_RATIO = 1.5
# Components drawn in the plot's wall-time panel: the ones whose work grows with the rows.
PLOTTED_NODES = (
    "MovieLensGenerator",
    "BigQueryExampleGen",
    "StatisticsGen",
    "BanditTrainer",
    "PolicyEvaluator",
)

RssSample = Tuple[float, int]  # (seconds since the epoch, bytes of the whole process tree)
Window = Tuple[float, float]  # (start, end) in seconds since the epoch


@dataclasses.dataclass(frozen=True)
class MemoryUse:
    """A component's peak tree RSS and how far it rose over the RSS when the component began."""

    peak_mb: float
    rise_mb: float


@dataclasses.dataclass(frozen=True)
class ComponentFigures:
    """One component at one size: wall time, rows/s (None under MIN_RATE_SECONDS) and memory
    (None: no sample in its window)."""

    node: str
    seconds: float
    rows_per_s: Optional[float]
    peak_rss_mb: Optional[float]
    rss_rise_mb: Optional[float]
    load_1m: float


@dataclasses.dataclass(frozen=True)
class SizeRun:
    """The training DAG at one number of logged events, in its own root and emulator."""

    num_events: int
    dag_seconds: float
    emulator_start_s: float
    load_1m_end: float
    stopped: str
    components: List[ComponentFigures]

    def component(self, node: str) -> Optional[ComponentFigures]:
        return next((c for c in self.components if c.node == node), None)


def memory_by_component(
    samples: Sequence[RssSample], windows: Mapping[str, Window]
) -> Dict[str, MemoryUse]:
    """Peak and rise of the tree RSS inside each component's window.

    The rise is measured from the last sample at or before the window's start
    (the first sample inside it if none came before). Components with no
    sample inside their window (shorter than the sampling interval) are left out.
    """
    ordered = sorted(samples)
    uses = {}
    for node, (start, end) in windows.items():
        inside = [rss for at, rss in ordered if start <= at <= end]
        if not inside:
            continue
        before = [rss for at, rss in ordered if at <= start]
        at_start = before[-1] if before else inside[0]
        peak = max(inside)
        uses[node] = MemoryUse(peak_mb=peak / MB, rise_mb=(peak - at_start) / MB)
    return uses


def component_figures(
    num_events: int,
    windows: Mapping[str, Window],
    memory: Mapping[str, MemoryUse],
    loads_at_end: Mapping[str, float],
) -> List[ComponentFigures]:
    """Every component's figures, in the order of `windows` (the DAG's execution order)."""
    figures = []
    for node, (start, end) in windows.items():
        seconds = end - start
        use = memory.get(node)
        figures.append(
            ComponentFigures(
                node=node,
                seconds=seconds,
                rows_per_s=num_events / seconds if seconds >= MIN_RATE_SECONDS else None,
                peak_rss_mb=use.peak_mb if use else None,
                rss_rise_mb=use.rise_mb if use else None,
                load_1m=loads_at_end[node],
            )
        )
    return figures


def ratio(value: Optional[float], baseline: Optional[float]) -> Optional[float]:
    """value / baseline, or None when either is missing or the baseline is zero."""
    if value is None or not baseline:
        return None
    return value / baseline


def memory_target_lines(baseline: SizeRun, run: SizeRun) -> List[str]:
    """One line per target component: its peak RSS ratio to the baseline size, met or not."""
    lines = []
    for node in MEMORY_TARGET_NODES:
        now, then = run.component(node), baseline.component(node)
        peak_ratio = ratio(now and now.peak_rss_mb, then and then.peak_rss_mb)
        if peak_ratio is None:
            lines.append(f"{node}: no peak RSS at both sizes (failed, or too short to sample)")
            continue
        verdict = "met" if peak_ratio <= MEMORY_TARGET_RATIO else "NOT met"
        lines.append(
            f"{node} peak RSS {_events(run.num_events)}/{_events(baseline.num_events)}: "
            f"{peak_ratio:.2f}x (target <= {MEMORY_TARGET_RATIO}x): {verdict}"
        )
    return lines


def format_table(run: SizeRun, baseline: Optional[SizeRun]) -> str:
    """The per-component table of one size, with ratios to the baseline size when given."""
    against = f" vs {_events(baseline.num_events)}" if baseline else ""
    header = (
        f"{'component':<30}{'seconds':>9}{'rows/s':>11}{'peak RSS MB':>13}{'rise MB':>9}"
        f"{'load 1m':>9}"
        + (f"{'time' + against:>15}{'peak' + against:>15}" if baseline else "")
    )
    lines = [header]
    for figures in run.components:
        row = (
            f"{figures.node:<30}{figures.seconds:>9.1f}{_whole(figures.rows_per_s):>11}"
            f"{_whole(figures.peak_rss_mb):>13}{_signed(figures.rss_rise_mb):>9}"
            f"{figures.load_1m:>9.2f}"
        )
        if baseline:
            then = baseline.component(figures.node)
            row += f"{_times(ratio(figures.seconds, then and then.seconds)):>15}"
            row += f"{_times(ratio(figures.peak_rss_mb, then and then.peak_rss_mb)):>15}"
        lines.append(row)
    dag_ratio = f"{_times(ratio(run.dag_seconds, baseline.dag_seconds)):>15}" if baseline else ""
    lines.append(
        f"{'whole DAG':<30}{run.dag_seconds:>9.1f}{run.num_events / run.dag_seconds:>11,.0f}"
        f"{'':>13}{'':>9}{run.load_1m_end:>9.2f}{dag_ratio}"
    )
    return "\n".join(line.rstrip() for line in lines)


def record(measured_at: str, commit: str, beam_pipeline_args: Sequence[str], cores: int,
           runs: Sequence[SizeRun]) -> dict:
    """One benchmark invocation as a JSON-ready dict."""
    return {
        "measured_at": measured_at,
        "commit": commit,
        "cores": cores,
        "beam_pipeline_args": list(beam_pipeline_args),
        "sizes": [dataclasses.asdict(run) for run in runs],
    }


def write_results(path: pathlib.Path, invocation: dict, append: bool) -> dict:
    """Writes {"runs": [...]} to `path`; with `append`, after the runs already there."""
    earlier = json.loads(path.read_text())["runs"] if append and path.exists() else []
    results = {"runs": [*earlier, invocation]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    return results


def latest_per_size(results: dict) -> List[SizeRun]:
    """Each size's most recent completed measurement across all recorded runs, smallest first."""
    latest: Dict[int, SizeRun] = {}
    for invocation in results["runs"]:
        for raw in invocation["sizes"]:
            run = SizeRun(
                **{**raw, "components": [ComponentFigures(**c) for c in raw["components"]]}
            )
            if not run.stopped:
                latest[run.num_events] = run
    return [latest[n] for n in sorted(latest)]


def plot(runs: Sequence[SizeRun], path: pathlib.Path) -> None:
    """Wall time per component and the trainer's and evaluator's peak RSS against events."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    events = [run.num_events for run in runs]
    figure, (time_axis, memory_axis) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    time_axis.plot(events, [run.dag_seconds for run in runs], "k-o", label="whole DAG")
    for node in PLOTTED_NODES:
        time_axis.plot(events, [_figure(run, node, "seconds") for run in runs], "-o", label=node)
    time_axis.set(xscale="log", yscale="log", xlabel="logged events", ylabel="wall time (s)",
                  title="Training DAG wall time")
    time_axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    time_axis.legend(fontsize=8)
    for node in MEMORY_TARGET_NODES:
        line, = memory_axis.plot(
            events, [_figure(run, node, "peak_rss_mb") for run in runs], "-o",
            label=f"{node} peak",
        )
        memory_axis.plot(
            events, [_figure(run, node, "rss_rise_mb") for run in runs], "--o",
            color=line.get_color(), label=f"{node} rise over its start",
        )
    memory_axis.set(xscale="log", xlabel="logged events", ylabel="RSS of the process tree (MB)",
                    title="Trainer and evaluator memory", ylim=(0, None))
    memory_axis.legend(fontsize=8)
    for axis in (time_axis, memory_axis):
        axis.set_xticks(events, [_events(n) for n in events])
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _figure(run: SizeRun, node: str, field: str) -> float:
    figures = run.component(node)
    value = getattr(figures, field) if figures else None
    return float("nan") if value is None else value


def _events(num_events: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if num_events >= size and num_events % size == 0:
            return f"{num_events // size}{unit}"
    return str(num_events)


def _whole(value: Optional[float]) -> str:
    return "" if value is None else f"{value:,.0f}"


def _signed(value: Optional[float]) -> str:
    return "" if value is None else f"{round(value) + 0:+,}"


def _times(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.2f}x"
