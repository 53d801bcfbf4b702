"""Paths mean one thing: resolved once, at the command line, against the caller's directory.

Children start elsewhere (the BigQuery emulator runs in its data directory),
so a relative path handed down would name a different place in each
process; every path option and path setting becomes absolute here instead.
"""

import argparse
import os
from typing import Optional

from tfx_pipeline.config import PipelineConfig

# argparse destinations of every path option of `mlbandits` and its subcommands.
PATH_OPTIONS = (
    "config",
    "root",
    "movielens_dir",
    "data_dir",
    "out",
    "metadata",
    "metadata_config",
    "dot",
    "output_dir",
    "pipeline_json",
)


def absolute(path: str, cwd: Optional[str] = None) -> str:
    """`path` (with ~ expanded) made absolute against `cwd`, the working directory by default."""
    return os.path.abspath(os.path.join(cwd or os.getcwd(), os.path.expanduser(path)))


def absolute_path_options(args: argparse.Namespace) -> argparse.Namespace:
    """Makes every path option given on the command line absolute, in place."""
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if value:
            setattr(args, name, absolute(value))
    return args


def absolute_config_paths(config: PipelineConfig) -> PipelineConfig:
    """The config with its local path settings absolute; empty ones keep their default meaning.

    Paths in a JSON config file are taken, like the options, from where the
    command runs. Vertex settings are URIs or paths in the pipeline image and
    are left alone.
    """
    overrides = {
        section: {name: absolute(value)}
        for section, name, value in (
            ("local", "root", config.local.root),
            ("movielens", "data_dir", config.movielens.data_dir),
            ("bigquery", "emulator_data_dir", config.bigquery.emulator_data_dir),
        )
        if value
    }
    return config.replace(**overrides).validate() if overrides else config
