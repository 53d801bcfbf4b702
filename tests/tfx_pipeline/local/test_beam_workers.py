"""`local.beam_workers`: how many cores the local Beam steps use, and the DirectRunner args."""

import json

import pytest

from tfx_pipeline.config import ConfigError, PipelineConfig, load_config
from tfx_pipeline.local.runner import available_cores, beam_pipeline_args

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def test_one_worker_runs_beam_in_the_pipelines_process():
    assert beam_pipeline_args(1) == IN_PROCESS


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_several_workers_run_as_processes(workers):
    assert beam_pipeline_args(workers) == [
        "--direct_running_mode=multi_processing",
        f"--direct_num_workers={workers}",
    ]


def test_zero_means_one_worker_per_available_core():
    cores = available_cores()
    expected = beam_pipeline_args(cores)
    assert beam_pipeline_args(0) == expected
    assert f"--direct_num_workers={cores}" in expected


@pytest.mark.parametrize("workers", range(0, 10))
def test_in_memory_mode_never_gets_more_than_one_worker(workers):
    """Beam's in_memory mode with several workers hangs once a DoFn runs TensorFlow."""
    args = beam_pipeline_args(workers)
    if "--direct_running_mode=in_memory" in args:
        assert "--direct_num_workers=1" in args


def test_the_args_are_a_fresh_list_each_time():
    beam_pipeline_args(1).append("--runner=Changed")
    assert beam_pipeline_args(1) == IN_PROCESS


def test_the_setting_is_read_from_the_local_section(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"local": {"beam_workers": 3}}))
    assert load_config(str(path)).local.beam_workers == 3


def test_a_negative_worker_count_is_refused_with_what_each_value_means(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"local": {"beam_workers": -1}}))
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    message = str(raised.value)
    assert "invalid setting local.beam_workers: -1 must be >= 0" in message
    assert "0 uses every core" in message and "1 runs Beam in the pipeline's process" in message


def test_a_worker_count_that_is_not_a_whole_number_is_refused():
    with pytest.raises(ConfigError, match=r"local.beam_workers: 1.5 is not of type int"):
        PipelineConfig().replace(local={"beam_workers": 1.5})
