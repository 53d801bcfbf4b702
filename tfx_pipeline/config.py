"""All settings of the pipeline in one typed place.

Every section has defaults that run locally with no editing. A JSON file can
override any field (`mlbandits --config my.json ...`); unknown keys, wrong
types and out-of-range values are rejected with a message that names the
setting, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import types
import typing
from typing import Any, Mapping, Optional

from bandit_core.agent_names import AGENTS, PER_ARM_AGENTS
from bandit_core.bigquery.settings import BigQueryConfig
from bandit_core.data_contract import MIN_PROPENSITY, REWARD_MAX, REWARD_MIN, DataContract
from bandit_core.errors import ConfigError
from bandit_core.errors import require as _require
from bandit_core.policy_metadata import CLASSIC, PER_ARM
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.bigquery_ingester.queries import QueryConfigError, build_examples_query
from custom_components.policy_evaluator.settings import EvaluatorSettings
from serving.settings import ServingSettings
from simulation import movielens_data, movielens_per_arm
from tfx_pipeline.demo_loop.settings import LoopConfig
from tfx_pipeline.vertex.config import VertexConfig

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class MovieLensConfig:
    """Where the data lives and how the bandit problem is cut from it.

    Attributes:
      data_dir: MovieLens 100K ("" for the shared copy or a verified download).
      rank_k: SVD rank, the length of user and movie vectors.
      problem: "classic" (the same `num_actions` movies every round, exact
        rewards) or "per_arm" (`num_candidates` movies drawn from all 1,682
        per round, each with its own features, noisy rewards).
      num_actions: the classic problem's movies.
      num_candidates: the per-arm problem's candidates per round.
      noise_sd: standard deviation of the per-arm problem's rating noise (0
        reproduces TF-Agents' noise-free environment).
      user_demographics: per-arm global features add age, gender, occupation.
      movie_metadata: per-arm movie features add genres and release year.
    """

    data_dir: str = ""
    rank_k: int = 20
    problem: str = CLASSIC
    num_actions: int = 20
    num_candidates: int = 50
    noise_sd: float = 1.0
    user_demographics: bool = False
    movie_metadata: bool = False

    @property
    def per_arm(self) -> bool:
        return self.problem == PER_ARM

    @property
    def observation_dim(self) -> int:
        """Length of a logged row's `observation`: the user's (global) features."""
        if not self.per_arm:
            return self.rank_k
        return self.rank_k + (movielens_per_arm.DEMOGRAPHICS_DIM if self.user_demographics else 0)

    @property
    def arm_dim(self) -> int:
        """Length of a movie's features in the items table (per-arm problem)."""
        return self.rank_k + (movielens_per_arm.METADATA_DIM if self.movie_metadata else 0)

    @property
    def feature_version(self) -> str:
        """Names the movie features of the items table that this problem uses."""
        return movielens_per_arm.item_feature_version(self.rank_k, self.movie_metadata)

    @property
    def actions_per_round(self) -> int:
        """What a policy chooses among: movies (classic) or candidate slots (per-arm)."""
        return self.num_candidates if self.per_arm else self.num_actions

    def validate(self) -> None:
        _require(self.rank_k >= 1, "movielens.rank_k", "must be >= 1")
        _require(
            self.problem in (CLASSIC, PER_ARM),
            "movielens.problem",
            f"{self.problem!r} is not a problem; choose {CLASSIC} or {PER_ARM}",
        )
        _require(
            1 <= self.num_actions <= movielens_data.NUM_ITEMS,
            "movielens.num_actions",
            "must be between 1 and 1682 (the movies in MovieLens 100K)",
        )
        _require(
            2 <= self.num_candidates <= movielens_data.NUM_ITEMS,
            "movielens.num_candidates",
            "must be between 2 and 1682 (the whole catalogue)",
        )
        _require(
            math.isfinite(self.noise_sd) and self.noise_sd >= 0.0,
            "movielens.noise_sd",
            "must be finite and >= 0 (0 gives TF-Agents' noise-free rewards)",
        )


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """How many logged interactions the Generator simulates, and with which seed.

    Event ids are derived from the seed, so rerunning with the same seed adds
    nothing new; a new seed appends a new batch of events.
    """

    num_events: int = 100_000
    seed: int = 42

    def validate(self) -> None:
        _require(self.num_events >= 1, "generator.num_events", "must be >= 1")
        _require(self.seed >= 0, "generator.seed", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class IngestionConfig:
    """Which logged rows are read for training, how they are split, and how many may be bad.

    Rows that break the data contract are quarantined (copied with their
    reasons to `bigquery.quarantine_table`) and training goes on without them;
    the run stops only when their share of the rows read exceeds
    `max_quarantined_share` (0 stops at the first bad row, 1 never stops).
    """

    window_start: str = ""
    window_end: str = ""
    source: str = ""
    train_buckets: int = 4
    eval_buckets: int = 1
    max_quarantined_share: float = 0.01

    def validate(self) -> None:
        try:
            build_examples_query("p.d.t", self.window_start, self.window_end, self.source)
        except QueryConfigError as e:
            raise ConfigError(f"invalid setting {e}") from e
        _require(self.train_buckets >= 1, "ingestion.train_buckets", "must be >= 1")
        _require(self.eval_buckets >= 1, "ingestion.eval_buckets", "must be >= 1")
        _require(
            0.0 <= self.max_quarantined_share <= 1.0,
            "ingestion.max_quarantined_share",
            f"{self.max_quarantined_share!r} must be a share in [0, 1] (0.01 stops a run when "
            "more than 1% of the rows read break the data contract)",
        )


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """Bounds of the data contract: the curated schema, the quarantine and the Generator's rows.

    The defaults are the contract's own (`bandit_core.data_contract`), which
    is also what the prediction server accepts; a narrower range here makes
    ingestion quarantine served rewards outside it.
    """

    reward_min: float = REWARD_MIN
    reward_max: float = REWARD_MAX
    min_propensity: float = MIN_PROPENSITY

    def validate(self) -> None:
        _require(
            math.isfinite(self.reward_min)
            and math.isfinite(self.reward_max)
            and self.reward_min < self.reward_max,
            "validation.reward_min/reward_max",
            "must be finite with reward_min < reward_max",
        )
        _require(
            0.0 < self.min_propensity <= 1.0,
            "validation.min_propensity",
            "must be in (0, 1]",
        )


@dataclasses.dataclass(frozen=True)
class LocalRunConfig:
    """Where a local run keeps its pipeline root, metadata and pushed policies; its Beam workers.

    Attributes:
      root: directory of the run ("" for `runs/` in the repository).
      beam_workers: workers of the Beam steps (Beam's DirectRunner): 1 runs
        them in the pipeline's own process, n > 1 in n worker processes, 0 in
        one process per core. Each worker process imports TensorFlow, seconds
        per Beam step, and on 2 cores, which the emulator shares, processes
        made the DAG slower at 100k and 1M events (benchmarks/training_dag.py
        --beam-workers), hence the default 1.
    """

    root: str = ""
    beam_workers: int = 1

    @property
    def root_dir(self) -> pathlib.Path:
        return pathlib.Path(self.root) if self.root else REPO_ROOT / "runs"

    @property
    def pipeline_root(self) -> pathlib.Path:
        return self.root_dir / "pipeline_root"

    @property
    def metadata_path(self) -> pathlib.Path:
        return self.root_dir / "metadata.sqlite"

    @property
    def serving_model_dir(self) -> pathlib.Path:
        return self.root_dir / "serving_model"

    @property
    def spool_path(self) -> pathlib.Path:
        return self.root_dir / "serving" / "spool.sqlite"

    @property
    def trigger_dir(self) -> pathlib.Path:
        return self.root_dir / "trigger"

    def validate(self) -> None:
        _require(
            self.beam_workers >= 0,
            "local.beam_workers",
            f"{self.beam_workers} must be >= 0 (0 uses every core, 1 runs Beam in the "
            "pipeline's process, n > 1 starts n worker processes)",
        )


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The whole configuration: one section per concern."""

    pipeline_name: str = "movielens-bandits"
    movielens: MovieLensConfig = dataclasses.field(default_factory=MovieLensConfig)
    bigquery: BigQueryConfig = dataclasses.field(default_factory=BigQueryConfig)
    generator: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    ingestion: IngestionConfig = dataclasses.field(default_factory=IngestionConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    trainer: TrainerSettings = dataclasses.field(default_factory=TrainerSettings)
    evaluator: EvaluatorSettings = dataclasses.field(default_factory=EvaluatorSettings)
    serving: ServingSettings = dataclasses.field(default_factory=ServingSettings)
    loop: LoopConfig = dataclasses.field(default_factory=LoopConfig)
    local: LocalRunConfig = dataclasses.field(default_factory=LocalRunConfig)
    vertex: VertexConfig = dataclasses.field(default_factory=VertexConfig)

    def validate(self) -> "PipelineConfig":
        _require(
            bool(self.pipeline_name)
            and all(c.isalnum() or c in "-_" for c in self.pipeline_name),
            "pipeline_name",
            "must be non-empty letters, digits, - or _",
        )
        for field in dataclasses.fields(self):
            section = getattr(self, field.name)
            if dataclasses.is_dataclass(section):
                section.validate()
        agents = PER_ARM_AGENTS if self.movielens.per_arm else AGENTS
        _require(
            self.trainer.agent in agents,
            "trainer.agent",
            f"{self.trainer.agent!r} does not fit movielens.problem={self.movielens.problem}; "
            f"choose one of {', '.join(agents)}",
        )
        return self

    @property
    def data_contract(self) -> DataContract:
        """What a logged row of the configured problem may hold."""
        movielens, validation = self.movielens, self.validation
        return DataContract(
            observation_dim=movielens.observation_dim,
            num_actions=movielens.actions_per_round,
            reward_min=validation.reward_min,
            reward_max=validation.reward_max,
            min_propensity=validation.min_propensity,
            arm_dim=movielens.arm_dim if movielens.per_arm else 0,
        )

    def replace(self, **sections: Mapping[str, Any]) -> "PipelineConfig":
        """Returns a copy with some fields of some sections overridden."""
        return _from_mapping(type(self), _merge(dataclasses.asdict(self), sections), "")


def load_config(path: Optional[str] = None) -> PipelineConfig:
    """Reads a JSON config file over the defaults; no path gives the defaults."""
    if not path:
        return PipelineConfig().validate()
    file = pathlib.Path(path)
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"config file {file} does not exist; pass an existing JSON file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {file} cannot be read as UTF-8 text: {e}") from e
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"config file {file} is not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}"
        ) from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {file} must hold a JSON object at the top level")
    return _from_mapping(PipelineConfig, raw, "").validate()


def _merge(base: dict, override: Mapping[str, Any]) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _from_mapping(cls: type, raw: Mapping[str, Any], prefix: str) -> Any:
    """Builds dataclass `cls` from `raw`, checking every key and type."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting {prefix}{unknown[0]}; known settings here: {', '.join(sorted(known))}"
        )
    values = {}
    for name, value in raw.items():
        setting = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"invalid setting {setting}: must be an object")
            values[name] = _from_mapping(hint, value, f"{setting}.")
        else:
            values[name] = _coerce(value, hint, setting)
    return cls(**values)


def _coerce(value: Any, hint: Any, setting: str) -> Any:
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = typing.get_args(hint) if is_union else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"invalid setting {setting}: {value!r} is not of type {names}")
