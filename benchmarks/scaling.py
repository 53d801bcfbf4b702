"""Scaling benchmark: the local training DAG at several numbers of logged events.

Each size runs in its own fresh root with its own emulator. Per component it
reports wall time (MLMD execution: created -> last updated), rows/s (logged
events / wall time) and the peak RSS of the process tree: LocalDagRunner runs
every component in this process and Beam's multi-processing workers are its
child processes, so a thread sums the RSS of this process and its descendants
every 0.2 s (the emulator's processes excluded) and each sample is attributed
to the component running then. Memory a component frees stays in the
process's RSS, so the rise over the RSS at the component's start is reported
too. The smallest size is the baseline: the other sizes are printed as ratios
to it, measured in the same run, beside the 1-minute load average. The BigQuery
emulator runs on the same cores as the DAG.

Results go to a JSON file (`--append` keeps the runs already there, e.g. a
10M-event run made by hand) and the plot, drawn from each size's latest run in
that file, to docs/scaling.png.

Usage: .venv/bin/python benchmarks/scaling.py [--num-events 100000 1000000]
       [--beam-workers N] [--json docs/scaling.json] [--plot docs/scaling.png] [--append]
"""

import argparse
import datetime
import pathlib
import subprocess
import tempfile
import threading
import time
from typing import List, Optional, Set

import psutil
import scaling_results
from scaling_results import RssSample, SizeRun
from training_dag import LoadSampler, component_windows

from tfx_pipeline import pipeline
from tfx_pipeline.config import REPO_ROOT, LocalRunConfig, PipelineConfig
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.local.emulator import BigQueryEmulator
from tfx_pipeline.reports import run_summary

SAMPLE_INTERVAL_S = 0.2


class TreeRssSampler:
    """Samples the summed RSS of this process and its descendants, except `excluded_pid`'s tree."""

    def __init__(self, excluded_pid: Optional[int]) -> None:
        self.samples: List[RssSample] = []
        self._excluded_pid = excluded_pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _excluded(self) -> Set[int]:
        if self._excluded_pid is None:
            return set()
        try:
            excluded = psutil.Process(self._excluded_pid)
            return {self._excluded_pid, *(p.pid for p in excluded.children(recursive=True))}
        except psutil.NoSuchProcess:
            return {self._excluded_pid}

    def tree_rss(self) -> int:
        """Bytes resident in this process and its descendants (shared pages once per process)."""
        me = psutil.Process()
        excluded = self._excluded()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            if child.pid in excluded:
                continue
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:  # a Beam worker that ended between listing and reading
                continue
        return total

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), self.tree_rss()))
            if self._stop.wait(SAMPLE_INTERVAL_S):
                return

    def __enter__(self) -> "TreeRssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_size(num_events: int, beam_workers: int) -> SizeRun:
    """The training DAG at `num_events` in a fresh root; a failure is recorded, not raised."""
    root = pathlib.Path(tempfile.mkdtemp(prefix=f"mlbandits-scaling-{num_events}-"))
    config = PipelineConfig().replace(
        local={"root": str(root), "beam_workers": beam_workers},
        generator={"num_events": num_events},
    ).validate()
    started = time.perf_counter()
    stopped = ""
    with BigQueryEmulator(project=config.bigquery.project, data_dir=root / "bigquery") as emulator:
        emulator_start_s = time.perf_counter() - started
        with LoadSampler() as loads, TreeRssSampler(excluded_pid=emulator.pid) as rss:
            try:
                local_runner.run_pipeline(config, emulator.endpoints)
            except Exception as e:  # report how far it got
                stopped = str(e).splitlines()[0][:300]
        dag_seconds = time.perf_counter() - started - emulator_start_s
    if stopped:
        failed = run_summary.failed_components(
            run_summary.open_store(str(config.local.metadata_path)),
            pipeline.pipeline_name(config, retraining=False),
        )
        stopped = f"stopped in {', '.join(failed) or 'an unrecorded step'}: {stopped}"
    windows = component_windows(config)
    memory = scaling_results.memory_by_component(rss.samples, windows)
    return SizeRun(
        num_events=num_events,
        dag_seconds=dag_seconds,
        emulator_start_s=emulator_start_s,
        load_1m_end=loads.samples[-1][1],
        stopped=stopped,
        components=scaling_results.component_figures(
            num_events, windows, memory, {node: loads.at(end) for node, (_, end) in windows.items()}
        ),
    )


def commit() -> str:
    """The checked-out commit, marked -dirty when the work tree has changes."""
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    return described.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--beam-workers", type=int, default=LocalRunConfig.beam_workers)
    parser.add_argument("--json", type=pathlib.Path, default=REPO_ROOT / "docs" / "scaling.json")
    parser.add_argument("--plot", type=pathlib.Path, default=REPO_ROOT / "docs" / "scaling.png")
    parser.add_argument(
        "--append", action="store_true", help="keep the runs already in --json (else replace)"
    )
    args = parser.parse_args()
    if min(args.num_events) < 1:
        parser.error(f"--num-events {min(args.num_events)} must be >= 1 (logged events per size)")
    if args.beam_workers < 0:
        parser.error(f"--beam-workers {args.beam_workers} must be >= 0 (0 uses every core)")
    beam_args = local_runner.beam_pipeline_args(args.beam_workers)
    cores = local_runner.available_cores()
    print(
        f"Training DAG at {', '.join(map(str, sorted(args.num_events)))} logged events on {cores} "
        f"cores; Beam: {' '.join(beam_args)}. The BigQuery emulator shares these cores (its memory "
        f"is not counted). RSS: this process and its Beam workers, every {SAMPLE_INTERVAL_S} s.",
        flush=True,
    )
    runs: List[SizeRun] = []
    for num_events in sorted(set(args.num_events)):
        run = run_size(num_events, args.beam_workers)
        baseline = runs[0] if runs and not runs[0].stopped else None
        print(f"\n{num_events:,} logged events (emulator start {run.emulator_start_s:.1f} s)")
        print(scaling_results.format_table(run, baseline))
        if run.stopped:
            print(f"The run {run.stopped}")
        elif baseline:
            print("\n".join(scaling_results.memory_target_lines(baseline, run)))
        runs.append(run)
    measured_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    invocation = scaling_results.record(measured_at, commit(), beam_args, cores, runs)
    results = scaling_results.write_results(args.json, invocation, args.append)
    scaling_results.plot(scaling_results.latest_per_size(results), args.plot)
    print(f"\nResults: {args.json}\nPlot: {args.plot}")


if __name__ == "__main__":
    main()
