"""SummaryWriter: what it writes is what TensorBoard reads; bad numbers are refused by name."""

import math

import numpy as np
import pytest

from bandit_core.summary_writer import HISTOGRAM_BUCKETS, SummaryWriter, check_scalar
from tests.helpers.summary_events import read_histograms, read_scalars


def test_scalars_and_histograms_read_back_through_tensorboard(tmp_path):
    values = np.random.default_rng(0).normal(size=500)
    with SummaryWriter(str(tmp_path)) as writer:
        for step, value in enumerate((0.5, 0.25, np.float32(0.125))):
            writer.scalar("loss/epoch", value, step)
        writer.scalar("arm_rows/arm_3", 7, 0)
        writer.histogram("predicted_reward/arm_0", values.reshape(50, 10), 0)

    assert read_scalars(str(tmp_path)) == {
        "loss/epoch": [(0, 0.5), (1, 0.25), (2, 0.125)],
        "arm_rows/arm_3": [(0, 7.0)],
    }
    ((step, buckets),) = read_histograms(str(tmp_path))["predicted_reward/arm_0"]
    assert step == 0 and buckets.shape == (HISTOGRAM_BUCKETS, 3)
    assert buckets[:, 2].sum() == 500
    assert buckets[0, 0] == pytest.approx(values.min())
    assert buckets[-1, 1] == pytest.approx(values.max())


@pytest.mark.parametrize(
    "tag, value, step, message",
    [
        ("", 1.0, 0, "summary tag '' is not valid"),
        ("loss epoch", 1.0, 0, "summary tag 'loss epoch' is not valid: use letters"),
        ("loss//epoch", 1.0, 0, "summary tag 'loss//epoch' is not valid"),
        ("loss", 1.0, -1, "summary 'loss': step -1 must be a whole number >= 0"),
        ("loss", 1.0, 1.5, "summary 'loss': step 1.5 must be a whole number >= 0"),
        ("loss", True, 0, "summary 'loss': value True is not a number"),
        ("loss", "1", 0, "summary 'loss': value '1' is not a number"),
        ("loss", math.nan, 0, "summary 'loss': value nan is not finite; leave undefined"),
        ("loss", -math.inf, 0, "summary 'loss': value -inf is not finite"),
    ],
)
def test_a_bad_scalar_is_refused_with_what_is_wrong(tag, value, step, message):
    with pytest.raises(ValueError) as raised:
        check_scalar(tag, value, step)
    assert message in str(raised.value)


def test_a_refused_scalar_writes_nothing(tmp_path):
    with SummaryWriter(str(tmp_path)) as writer:
        writer.scalar("loss", 1.0, 0)
        with pytest.raises(ValueError, match="not finite"):
            writer.scalar("loss", math.nan, 1)
    assert read_scalars(str(tmp_path)) == {"loss": [(0, 1.0)]}


@pytest.mark.parametrize(
    "values, message",
    [
        ([], "summary 'h': a histogram needs at least one value"),
        ([1.0, math.nan, 2.0, math.inf], "2 of 4 values are not finite (first at index 1)"),
    ],
)
def test_a_bad_histogram_is_refused_with_what_is_wrong(tmp_path, values, message):
    with SummaryWriter(str(tmp_path)) as writer:
        with pytest.raises(ValueError) as raised:
            writer.histogram("h", np.array(values), 0)
    assert message in str(raised.value)
    assert read_histograms(str(tmp_path)) == {}


@pytest.mark.parametrize("logdir", ["", "  ", None])
def test_a_writer_needs_a_directory(logdir):
    with pytest.raises(ValueError, match="is not a path: pass the directory TensorBoard"):
        SummaryWriter(logdir)
