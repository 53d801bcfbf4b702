"""Times the local training DAG per component on the full MovieLens 100K setting.

Each component's wall time comes from its MLMD execution (created -> last
updated); the baseline measured in the same run is the whole DAG's wall time,
so every row is also printed as a share of it.

Usage: .venv/bin/python benchmarks/training_dag.py [--num-events 100000] [--root DIR]
"""

import argparse
import tempfile
import time

from tfx_pipeline import pipeline
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.reports import run_summary


def component_seconds(config: PipelineConfig) -> dict:
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
        node_names[e.id]: (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0
        for e in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-events", type=int, default=100_000)
    parser.add_argument("--root", default="")
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="mlbandits-bench-")
    config = PipelineConfig().replace(
        local={"root": root}, generator={"num_events": args.num_events}
    ).validate()
    started = time.perf_counter()
    with local_runner.bigquery_endpoints(config) as endpoints:
        emulator_ready = time.perf_counter() - started
        local_runner.run_pipeline(config, endpoints)
        dag_seconds = time.perf_counter() - started - emulator_ready
    print(f"\nTraining DAG on {args.num_events} logged events (emulator start {emulator_ready:.1f} s)")
    print(f"{'component':<20}{'seconds':>9}{'share of DAG':>14}")
    for node, seconds in component_seconds(config).items():
        print(f"{node:<20}{seconds:>9.1f}{seconds / dag_seconds:>14.1%}")
    print(f"{'whole DAG':<20}{dag_seconds:>9.1f}{1:>14.0%}")


if __name__ == "__main__":
    main()
