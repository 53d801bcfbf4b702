"""Reads a summary directory back the way TensorBoard does, with its EventAccumulator."""

from typing import Dict, List, Tuple

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

# 0 keeps every point; TensorBoard's default keeps a sample of 10 per tag.
_KEEP_ALL = {"tensors": 0}


def _tensors(logdir: str) -> Dict[str, List[Tuple[int, np.ndarray, str]]]:
    """tag -> [(step, value, plugin)] in the order TensorBoard reads them."""
    accumulator = EventAccumulator(logdir, size_guidance=_KEEP_ALL)
    accumulator.Reload()
    return {
        tag: [
            (
                event.step,
                tensor_util.make_ndarray(event.tensor_proto),
                accumulator.SummaryMetadata(tag).plugin_data.plugin_name,
            )
            for event in accumulator.Tensors(tag)
        ]
        for tag in accumulator.Tags()["tensors"]
    }


def read_scalars(logdir: str) -> Dict[str, List[Tuple[int, float]]]:
    """tag -> [(step, value)] of every scalar summary in `logdir`."""
    return {
        tag: [(step, float(value)) for step, value, _ in points]
        for tag, points in _tensors(logdir).items()
        if points[0][2] == "scalars"
    }


def read_histograms(logdir: str) -> Dict[str, List[Tuple[int, np.ndarray]]]:
    """tag -> [(step, [buckets, 3] left edge, right edge, count)] of every histogram."""
    return {
        tag: [(step, value) for step, value, _ in points]
        for tag, points in _tensors(logdir).items()
        if points[0][2] == "histograms"
    }
