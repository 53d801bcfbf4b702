"""A line per component of a LocalDagRunner run, with its time and key output.

LocalDagRunner runs the components one after another in the calling thread
and logs "Component <id> is running." / "... is finished." around each; its
launcher logs the MLMD execution id in between. A logging handler on those
records sees each component start and end synchronously, in order, after
the launcher has published to MLMD, so the outputs it reads are complete and
nothing reads the SQLite store while TFX writes it. Polling MLMD from another
thread would instead see components only between polls and race the writer.
"""

import logging
import pathlib
import re
import time
from typing import Optional

from ml_metadata import metadata_store

from tfx_pipeline.console import StatusLine
from tfx_pipeline.reports import component_outputs, run_summary

# The absl logger's records of tfx.orchestration.local.local_dag_runner and .portable.launcher.
_STARTED = re.compile(r"Component (\S+) is running\.")
_FINISHED = re.compile(r"Component (\S+) is finished\.")
_EXECUTION = re.compile(r"(?:Going to run a new execution|A cached execution) (\d+)")
_FAILED = re.compile(r"Execution (\d+) failed\.")
_NAME_WIDTH = 30


class ComponentProgress(logging.Handler):
    """Shows each component of the runs in its block as it starts and ends.

    `permanent` components get a line of their own; otherwise a component is
    shown only on the status line while it runs (the demo's retraining DAGs).
    """

    def __init__(self, status: StatusLine, metadata_path: pathlib.Path, indent: str = "  "):
        super().__init__(logging.INFO)
        self.permanent = True
        self.label = ""
        self._status = status
        self._metadata_path = metadata_path
        self._indent = indent
        self._store: Optional[metadata_store.MetadataStore] = None
        self._node: Optional[str] = None
        self._execution_id: Optional[int] = None
        self._started = 0.0

    def __enter__(self) -> "ComponentProgress":
        logging.getLogger("absl").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("absl").removeHandler(self)
        if self._node is not None:
            self._finish("failed")

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if match := _STARTED.fullmatch(message):
            self._start(match.group(1))
        elif match := _EXECUTION.match(message):
            self._execution_id = int(match.group(1))
        elif _FAILED.fullmatch(message) and self._node is not None:
            self._finish("failed")
        elif (match := _FINISHED.fullmatch(message)) and match.group(1) == self._node:
            self._finish(self._outputs())

    def _start(self, node: str) -> None:
        self._node, self._execution_id, self._started = node, None, time.monotonic()
        text = f"{self._indent}{self.label}{node:<{_NAME_WIDTH}}"
        if self._status.live:
            self._status.show(text.rstrip() + " ...")
        elif self.permanent:
            self._status.print(f"{text} started")

    def _finish(self, outcome: str) -> None:
        seconds = time.monotonic() - self._started
        line = f"{self._indent}{self.label}{self._node:<{_NAME_WIDTH}} {seconds:6.1f} s"
        self._node = None
        self._status.clear()
        if self.permanent:
            self._status.print(f"{line}  {outcome}".rstrip())

    def _outputs(self) -> str:
        """The key output, or why it cannot be read: a summary never stops the run."""
        if self._execution_id is None:
            return ""
        try:
            if self._store is None:
                self._store = run_summary.open_store(str(self._metadata_path))
            return component_outputs.describe_execution_outputs(self._store, self._execution_id)
        except Exception as e:  # noqa: BLE001 - reported on the line instead
            return f"(outputs unreadable: {e})"
