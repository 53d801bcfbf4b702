"""TensorBoard event files from plain numbers, for the trainer, the evaluator and the loop.

The callers hand over Python floats and NumPy arrays; this module alone turns
them into `tf.summary` records. A summary directory is TensorBoard's unit of a
"run": the trainer writes into its ModelRun artifact, the evaluator into its
ModelEvaluation artifact, the feedback loop into a directory of its own.
Numbers are checked before anything is written, because TensorBoard would
silently draw a NaN as a gap and a mistyped tag as a separate chart.
"""

import math
import numbers
import re
from types import TracebackType
from typing import Optional, Type

import numpy as np
import tensorflow as tf

# TensorBoard groups charts by the part of a tag before its first "/".
_TAG = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
HISTOGRAM_BUCKETS = 30


class SummaryWriter:
    """Scalars and histograms for one TensorBoard run, written into `logdir`.

    Use as a context manager; leaving it flushes the event file.
    """

    def __init__(self, logdir: str):
        if not isinstance(logdir, str) or not logdir.strip():
            raise ValueError(
                f"summary directory {logdir!r} is not a path: pass the directory TensorBoard "
                "should read, e.g. a ModelRun artifact's uri"
            )
        self.logdir = logdir
        self._writer = tf.summary.create_file_writer(logdir)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One point of the chart `tag` at x = `step`."""
        check_scalar(tag, value, step)
        with self._writer.as_default():
            tf.summary.scalar(tag, float(value), step=step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        """The distribution of `values` (any shape, flattened) at x = `step`."""
        _check_tag(tag)
        _check_step(tag, step)
        data = np.asarray(values, dtype=np.float64).ravel()
        if data.size == 0:
            raise ValueError(f"summary {tag!r}: a histogram needs at least one value")
        bad = ~np.isfinite(data)
        if bad.any():
            raise ValueError(
                f"summary {tag!r}: {int(bad.sum())} of {data.size} values are not finite "
                f"(first at index {int(np.flatnonzero(bad)[0])}); drop them before writing"
            )
        with self._writer.as_default():
            tf.summary.histogram(tag, data, step=step, buckets=HISTOGRAM_BUCKETS)

    def flush(self) -> None:
        """Puts what was written so far on disk, for a TensorBoard already watching."""
        self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file."""
        self._writer.close()

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()


def check_scalar(tag: str, value: float, step: int) -> None:
    """Raises ValueError unless `SummaryWriter.scalar` would accept these; writes nothing."""
    _check_tag(tag)
    _check_step(tag, step)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"summary {tag!r}: value {value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(
            f"summary {tag!r}: value {value} is not finite; leave undefined values out "
            "instead of writing them"
        )


def _check_tag(tag: str) -> None:
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise ValueError(
            f"summary tag {tag!r} is not valid: use letters, digits, '_', '.', '-' in parts "
            "joined by '/', e.g. 'loss/epoch'"
        )


def _check_step(tag: str, step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"summary {tag!r}: step {step!r} must be a whole number >= 0")
