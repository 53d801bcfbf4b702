"""The feedback loop's TensorBoard logs: mean reward and regret per round, a run per demo.

They live in `<root>/tensorboard/loop/<start time>`: ML Metadata records no
loop, so `mlbandits tensorboard` adds this directory to the trainer's and the
evaluator's, and TensorBoard lists each demo as the run `loop/<start time>`.
A directory per demo keeps a second demo on the same root from drawing its
round 0 on top of the first one's.
"""

import datetime
import pathlib

from tfx_pipeline.reports import tensorboard_logs

LOOP_LOGS = pathlib.Path("tensorboard") / "loop"


def loop_logs_dir(root: pathlib.Path) -> pathlib.Path:
    """The directory holding every demo's loop run on the run root `root`."""
    return root / LOOP_LOGS


class LoopSummaries:
    """Writes each finished round of one demo into its own TensorBoard run."""

    def __init__(self, root: pathlib.Path, started: datetime.datetime):
        self.logdir = loop_logs_dir(root) / started.strftime("%Y-%m-%dT%H-%M-%S.%f")

    def record(self, round_index: int, reward: float, regret: float) -> None:
        """The round's mean observed reward and mean regret, at step `round_index`."""
        tensorboard_logs.write_loop_round(str(self.logdir), round_index, reward, regret)
