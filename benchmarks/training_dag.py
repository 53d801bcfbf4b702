"""Times the local training DAG per component on the full MovieLens 100K setting.

Each component's wall time comes from its MLMD execution (created -> last
updated); the baseline measured in the same run is the whole DAG's wall time,
so every row is also printed as a share of it. The Generator and ExampleGen
rows also give rows per second. The BigQuery emulator runs on the same cores
as the DAG, and the machine may be shared: the 1-minute load average is
printed when each component ends, so noisy figures can be recognised. A run
that stops early prints the times it has and names the component that stopped.

Usage: .venv/bin/python benchmarks/training_dag.py [--num-events 100000] [--root DIR]
       [--beam-workers N]   (local.beam_workers: 0 every core, 1 in-process; default: the config's)
"""

import argparse
import os
import tempfile
import threading
import time
from typing import Dict, List, Tuple

from tfx_pipeline import pipeline
from tfx_pipeline.config import LocalRunConfig, PipelineConfig
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.reports import run_summary

# Components whose work grows with the number of logged events.
ROW_COMPONENTS = ("MovieLensGenerator", "BigQueryExampleGen")


def component_windows(config: PipelineConfig) -> Dict[str, Tuple[float, float]]:
    """Node id -> (start, end) of its execution in the latest run, in seconds since the epoch.

    Start is when MLMD created the execution, end its last update.
    """
    store = run_summary.open_store(str(config.local.metadata_path))
    name = pipeline.pipeline_name(config, retraining=False)
    run_contexts = store.get_children_contexts_by_context(
        store.get_context_by_type_and_name("pipeline", name).id
    )
    run = max(run_contexts, key=lambda c: c.create_time_since_epoch)
    node_names = {}
    for execution in store.get_executions_by_context(run.id):
        for context in store.get_contexts_by_execution(execution.id):
            if context.name.startswith(f"{name}."):
                node_names[execution.id] = context.name.split(".", 1)[1]
    return {
        node_names[e.id]: (
            e.create_time_since_epoch / 1000.0,
            e.last_update_time_since_epoch / 1000.0,
        )
        for e in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    }


class LoadSampler:
    """Samples the 1-minute load average in a thread while the block runs; looks it up by time."""

    INTERVAL_S = 5.0

    def __init__(self) -> None:
        self.samples: List[Tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.samples.append((time.time(), os.getloadavg()[0]))
        while not self._stop.wait(self.INTERVAL_S):
            self.samples.append((time.time(), os.getloadavg()[0]))

    def __enter__(self) -> "LoadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), os.getloadavg()[0]))

    def at(self, when: float) -> float:
        """The sample nearest to `when` (seconds since the epoch)."""
        return min(self.samples, key=lambda s: abs(s[0] - when))[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-events", type=int, default=100_000)
    parser.add_argument("--root", default="")
    parser.add_argument("--beam-workers", type=int, default=LocalRunConfig.beam_workers)
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="mlbandits-bench-")
    config = PipelineConfig().replace(
        local={"root": root, "beam_workers": args.beam_workers},
        generator={"num_events": args.num_events},
    ).validate()
    started = time.perf_counter()
    stopped = ""
    with local_runner.bigquery_endpoints(config) as endpoints:
        emulator_ready = time.perf_counter() - started
        with LoadSampler() as loads:
            try:
                local_runner.run_pipeline(config, endpoints)
            except Exception as e:  # report how far it got
                stopped = str(e).splitlines()[0][:300]
        dag_seconds = time.perf_counter() - started - emulator_ready
    print(
        f"\nTraining DAG on {args.num_events} logged events "
        f"(emulator start {emulator_ready:.1f} s; Beam: "
        f"{' '.join(local_runner.beam_pipeline_args(config.local.beam_workers))})"
    )
    print(f"{'component':<32}{'seconds':>9}{'share of DAG':>14}{'rows/s':>10}{'load 1m':>9}")
    for node, (began, ended) in component_windows(config).items():
        seconds = ended - began
        rate = f"{args.num_events / seconds:,.0f}" if node in ROW_COMPONENTS and seconds else ""
        print(
            f"{node:<32}{seconds:>9.1f}{seconds / dag_seconds:>14.1%}{rate:>10}"
            f"{loads.at(ended):>9.2f}"
        )
    print(f"{'whole DAG':<32}{dag_seconds:>9.1f}{1:>14.0%}{'':>10}{loads.samples[-1][1]:>9.2f}")
    if stopped:
        failed = run_summary.failed_components(
            run_summary.open_store(str(config.local.metadata_path)),
            pipeline.pipeline_name(config, retraining=False),
        )
        print(f"\nThe run stopped in {', '.join(failed) or 'an unrecorded step'}: {stopped}")


if __name__ == "__main__":
    main()
