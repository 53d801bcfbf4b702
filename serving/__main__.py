"""`python -m serving`: the serving container's entry point, configured by environment.

Vertex AI sets the AIP_* variables; everything project-specific is MLBANDITS_*:

  AIP_STORAGE_URI                 policy dir or push base dir (required)
  AIP_HTTP_PORT                   8080
  AIP_HEALTH_ROUTE                /health
  AIP_PREDICT_ROUTE               /predict
  AIP_DEPLOYED_MODEL_ID           set by Vertex: logged as model_version, so every logged
                                  prediction names the DeployedModel lineage can trace
  MLBANDITS_HOST                  127.0.0.1 (set 0.0.0.0 in a container)
  MLBANDITS_REWARD_ROUTE          /reward
  MLBANDITS_MAX_INSTANCES         1000
  MLBANDITS_MAX_BODY_BYTES        8388608 (8 MiB)
  MLBANDITS_MODEL_POLL_S          10 (seconds between checks for a newer policy)
  MLBANDITS_SCORER                numpy | savedmodel (the slow reference path)
  MLBANDITS_EXPLORATION           epsilon_greedy | boltzmann
  MLBANDITS_EPSILON               0.1
  MLBANDITS_TEMPERATURE           1.0
  MLBANDITS_THOMPSON_SAMPLES      1000 (posterior draws per per-arm LinTS prediction)
  MLBANDITS_SEED                  unset: OS entropy (sampling of logged actions)
  MLBANDITS_SPOOL_PATH            /tmp/mlbandits/serving-spool.sqlite
  MLBANDITS_SPOOL_MAX_MB          1024 (when full, predictions answer 503 until rows leave)
  MLBANDITS_REWARD_WINDOW_S       604800 (7 days a served event accepts its reward; the
                                  registry keeps at most half the cap, oldest forgotten first)
  MLBANDITS_SHIP_LOGS             true; false keeps rows in the spool for a later shipper
  MLBANDITS_SHIP_METHOD           insert_all (at least once in the table) | write_api (exactly once;
                                  opt-in: stalls seen after emulator restarts)
  MLBANDITS_SHIP_SETTLE_S         5 (wait after a failed send before asking what landed)
  MLBANDITS_BQ_PROJECT            local-proj
  MLBANDITS_BQ_DATASET            mlbandits
  MLBANDITS_BQ_PREDICTIONS_TABLE  predictions
  MLBANDITS_BQ_REWARDS_TABLE      rewards
  MLBANDITS_BQ_REST_ENDPOINT      unset: real BigQuery; else the emulator's REST URL
  MLBANDITS_BQ_GRPC_ENDPOINT      unset: real BigQuery; else the emulator's host:port
  OPENBLAS_NUM_THREADS            1 unless set: per-request products are faster on one thread

`--scorer` on the command line overrides MLBANDITS_SCORER. A version whose
sidecar says problem "per_arm" is served by `serving.per_arm_scorer` either way:
`numpy` scores linear agents in NumPy, `savedmodel` asks every round of the
version's SavedModel (`load_per_arm_saved_model`).
"""

import argparse
import dataclasses
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Mapping, Optional, Tuple

# Must precede NumPy's import. A request's [1, d] x [d, K * (d + 1)] product is
# too small to gain from OpenBLAS's threads, which spin on the cores the event
# loop needs (see the README's serving latency section).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402

from bandit_core.bigquery.clients import BigQueryEndpoints  # noqa: E402
from bandit_core.bigquery.settings import BigQueryConfig  # noqa: E402
from bandit_core.errors import ConfigError  # noqa: E402
from bandit_core.policy_metadata import PER_ARM, read_policy_metadata  # noqa: E402
from bandit_core.whole_numbers import is_whole_number  # noqa: E402
from serving.bigquery_names import (  # noqa: E402
    check_dataset_id,
    check_project_id,
    check_table_id,
)
from serving.event_spool import EventSpool  # noqa: E402
from serving.model_registry import ModelRegistry  # noqa: E402
from serving.per_arm_scorer import load_per_arm_saved_model, load_per_arm_scorer  # noqa: E402
from serving.policy_scorer import SavedModelScorer, load_policy_scorer  # noqa: E402
from serving.prediction_logger import (  # noqa: E402
    INSERT_ALL,
    SHIP_METHODS,
    WRITE_API,
    PredictionLogger,
)
from serving.server import BanditServer  # noqa: E402
from serving.settings import ServingSettings  # noqa: E402
from serving.spool_maintenance import SpoolMaintenance  # noqa: E402

_LOG = logging.getLogger("serving")


def by_problem(
    classic: Callable[[str], object], per_arm: Callable[[str], object]
) -> Callable[[str], object]:
    """A loader that picks the classic or the per-arm scorer by the version's sidecar."""

    def load(policy_dir: str) -> object:
        if read_policy_metadata(policy_dir).problem == PER_ARM:
            return per_arm(policy_dir)
        return classic(policy_dir)

    return load


SCORERS: Mapping[str, Callable[[str], object]] = {
    "numpy": by_problem(load_policy_scorer, load_per_arm_scorer),
    "savedmodel": by_problem(SavedModelScorer, load_per_arm_saved_model),
}
_BQ_DEFAULTS = BigQueryConfig()
# Vertex AI's port when AIP_HTTP_PORT is unset; the settings' default, 0 (any
# free port), is for local runs.
_VERTEX_HTTP_PORT = 8080
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")
_MB = 1024 * 1024
_BQ_NAMES = (
    ("MLBANDITS_BQ_PROJECT", _BQ_DEFAULTS.project, check_project_id),
    ("MLBANDITS_BQ_DATASET", _BQ_DEFAULTS.dataset, check_dataset_id),
    ("MLBANDITS_BQ_PREDICTIONS_TABLE", _BQ_DEFAULTS.predictions_table, check_table_id),
    ("MLBANDITS_BQ_REWARDS_TABLE", _BQ_DEFAULTS.rewards_table, check_table_id),
)


class SettingsError(ValueError):
    """An environment variable is missing or invalid; the message names it."""


@dataclasses.dataclass(frozen=True)
class ContainerSettings:
    """Everything `main` wires together, read from the environment."""

    storage_uri: str
    deployed_model_id: Optional[str]
    serving: ServingSettings
    scorer: str
    model_poll_s: float
    seed: Optional[int]
    spool_path: Path
    spool_max_mb: float
    reward_window_s: float
    ship_logs: bool
    ship_method: str
    ship_settle_s: float
    endpoints: BigQueryEndpoints
    dataset: str
    predictions_table: str
    rewards_table: str


def settings_from_env(env: Mapping[str, str], scorer: Optional[str] = None) -> ContainerSettings:
    """Reads and validates the settings; raises SettingsError naming the variable."""
    storage_uri = env.get("AIP_STORAGE_URI", "")
    if not storage_uri:
        raise SettingsError("AIP_STORAGE_URI: required; point it at a policy or push directory")
    deployed_model_id = env.get("AIP_DEPLOYED_MODEL_ID") or None
    if deployed_model_id is not None and not is_whole_number(deployed_model_id):
        raise SettingsError(
            f"AIP_DEPLOYED_MODEL_ID: Vertex AI sets it to the DeployedModel's id (digits), got "
            f"{deployed_model_id!r}; unset it outside Vertex"
        )
    scorer = scorer or env.get("MLBANDITS_SCORER", "numpy")
    if scorer not in SCORERS:
        raise SettingsError(
            f"MLBANDITS_SCORER / --scorer: {scorer!r} is not one of {sorted(SCORERS)}"
        )
    try:
        serving = ServingSettings.from_environment(env, port=_VERTEX_HTTP_PORT)
    except ConfigError as error:
        raise SettingsError(str(error)) from None
    if scorer == "savedmodel" and serving.exploration != "epsilon_greedy":
        raise SettingsError(
            "MLBANDITS_EXPLORATION: the savedmodel scorer yields actions, not scores; "
            "only epsilon_greedy works with it"
        )
    model_poll_s = _number(env, "MLBANDITS_MODEL_POLL_S", float, 10.0)
    if not model_poll_s > 0:
        raise SettingsError(f"MLBANDITS_MODEL_POLL_S: must be > 0, got {model_poll_s}")
    seed = env.get("MLBANDITS_SEED")
    spool_max_mb = _number(env, "MLBANDITS_SPOOL_MAX_MB", float, 1024.0)
    if not spool_max_mb * _MB >= 1:
        raise SettingsError(f"MLBANDITS_SPOOL_MAX_MB: must be > 0, got {spool_max_mb}")
    reward_window_s = _number(env, "MLBANDITS_REWARD_WINDOW_S", float, 7 * 24 * 3600.0)
    if not reward_window_s > 0:
        raise SettingsError(
            f"MLBANDITS_REWARD_WINDOW_S: must be > 0 (seconds a served event accepts its "
            f"reward), got {reward_window_s}"
        )
    ship_settle_s = _number(env, "MLBANDITS_SHIP_SETTLE_S", float, 5.0)
    if not ship_settle_s >= 0:
        raise SettingsError(f"MLBANDITS_SHIP_SETTLE_S: must be >= 0, got {ship_settle_s}")
    project, dataset, predictions_table, rewards_table = _bigquery_names(env)
    endpoints = BigQueryEndpoints(
        project=project,
        rest_endpoint=env.get("MLBANDITS_BQ_REST_ENDPOINT") or None,
        grpc_endpoint=env.get("MLBANDITS_BQ_GRPC_ENDPOINT") or None,
    )
    ship_logs = _flag(env, "MLBANDITS_SHIP_LOGS", True)
    ship_method = _ship_method(env, endpoints, ship_logs)
    return ContainerSettings(
        storage_uri=storage_uri,
        deployed_model_id=deployed_model_id,
        serving=serving,
        scorer=scorer,
        model_poll_s=model_poll_s,
        seed=_number(env, "MLBANDITS_SEED", int, 0) if seed else None,
        spool_path=Path(env.get("MLBANDITS_SPOOL_PATH", "/tmp/mlbandits/serving-spool.sqlite")),
        spool_max_mb=spool_max_mb,
        reward_window_s=reward_window_s,
        ship_logs=ship_logs,
        ship_method=ship_method,
        ship_settle_s=ship_settle_s,
        endpoints=endpoints,
        dataset=dataset,
        predictions_table=predictions_table,
        rewards_table=rewards_table,
    )


def _ship_method(env: Mapping[str, str], endpoints: BigQueryEndpoints, ship_logs: bool) -> str:
    """MLBANDITS_SHIP_METHOD, checked against the endpoints it would ship to."""
    method = env.get("MLBANDITS_SHIP_METHOD", "").strip().lower() or INSERT_ALL
    if method not in SHIP_METHODS:
        raise SettingsError(
            f"MLBANDITS_SHIP_METHOD: {method!r} is not one of {', '.join(SHIP_METHODS)} "
            "(write_api: each row once in the table; insert_all: at least once)"
        )
    if ship_logs and method == WRITE_API and endpoints.is_emulator and not endpoints.grpc_endpoint:
        raise SettingsError(
            "MLBANDITS_BQ_GRPC_ENDPOINT: the Storage Write API (MLBANDITS_SHIP_METHOD=write_api) "
            "speaks gRPC: set it to the emulator's host:port beside MLBANDITS_BQ_REST_ENDPOINT, "
            "or set MLBANDITS_SHIP_METHOD=insert_all"
        )
    return method


def _bigquery_names(env: Mapping[str, str]) -> Tuple[str, ...]:
    """Project, dataset, predictions and rewards table, each checked by BigQuery's rules."""
    names = []
    for variable, default, check in _BQ_NAMES:
        value = env.get(variable, default)
        try:
            check(value)
        except ValueError as error:
            raise SettingsError(f"{variable}: {error}") from None
        names.append(value)
    return tuple(names)


def build_app(settings: ContainerSettings) -> web.Application:
    """The server with its registry, logger and spool maintenance, started now, stopped on cleanup.

    The maintenance runs whether or not logs are shipped: it is what keeps the
    spool's WAL and served registry bounded.
    """
    registry = ModelRegistry(
        settings.storage_uri,
        SCORERS[settings.scorer],
        settings.model_poll_s,
        on_swap=collect_and_freeze,
        single_version_name=settings.deployed_model_id,
    )
    spool = EventSpool(settings.spool_path, max_bytes=int(settings.spool_max_mb * _MB))
    maintenance = SpoolMaintenance(spool, reward_window_s=settings.reward_window_s).start()
    logger = PredictionLogger(
        spool,
        settings.endpoints,
        settings.dataset,
        settings.predictions_table,
        settings.rewards_table,
        settle_s=settings.ship_settle_s,
        ship_method=settings.ship_method,
    )
    if settings.ship_logs:
        logger.start()
    else:
        _LOG.warning("MLBANDITS_SHIP_LOGS is off: logs stay in %s", settings.spool_path)
    registry.start()
    server = BanditServer(
        registry,
        logger,
        settings.serving,
        rng=np.random.default_rng(settings.seed),
    )
    app = server.build_app()

    async def stop(_: web.Application) -> None:
        registry.stop()
        maintenance.stop()
        if not logger.close():
            _LOG.warning(
                "rows are still pending in %s; the next server ships them", settings.spool_path
            )

    app.on_cleanup.append(stop)
    return app


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scorer", choices=sorted(SCORERS), help="overrides MLBANDITS_SCORER")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings_from_env(os.environ, args.scorer)
    except SettingsError as error:
        _LOG.error("%s", error)
        return 2
    _LOG.info("starting with %s", settings)
    web.run_app(
        build_app(settings),
        host=settings.serving.host,
        port=settings.serving.port,
        access_log=None,
        print=None,
    )
    return 0


def collect_and_freeze() -> None:
    """After a swap: collects the previous model's garbage, then freezes what is left.

    TensorFlow leaves ~500k long-lived objects; a full garbage collection
    over them stalls every request for hundreds of milliseconds, and freezing
    them keeps later collections small. Frozen objects are never collected,
    though, so freezing again after each reload without unfreezing and
    collecting first would keep every replaced model's reference cycles alive
    (about 20 MB per SavedModel reload). One full collection per reload is the
    price of flat memory.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _number(env: Mapping[str, str], name: str, kind: type, default):
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        return kind(text)
    except ValueError:
        raise SettingsError(f"{name}: expected {kind.__name__}, got {text!r}") from None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in _TRUE + _FALSE:
        return text in _TRUE
    raise SettingsError(f"{name}: expected one of {_TRUE + _FALSE}, got {text!r}")


if __name__ == "__main__":
    sys.exit(main())
