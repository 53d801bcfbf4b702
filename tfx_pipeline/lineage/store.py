"""Access to the ML Metadata store: opening it, and reading values, times and
creation order off its records the same way in every lineage module."""

import datetime
import os
import pathlib
import sqlite3
from typing import Callable, Optional, Set, Tuple

from google.protobuf import json_format, message, text_format
from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

MLMD_TABLES = frozenset({"Artifact", "Execution", "Event", "Context", "MLMDEnv"})
SQLITE_HEADER = b"SQLite format 3\x00"


class LineageError(RuntimeError):
    """A lineage question cannot be answered; the message says what to do."""


def open_store(
    sqlite_path: Optional[os.PathLike] = None,
    connection_config: Optional[message.Message] = None,
) -> metadata_store.MetadataStore:
    """Opens an existing store read-only, or any MLMD connection (e.g. MySQL).

    A SQLite file is checked first because MLMD would silently create its
    tables in an empty or foreign database instead of reporting it.
    """
    if connection_config is not None:
        return _connect(connection_config, "the configured ML Metadata store")
    path = pathlib.Path(sqlite_path or "")
    _check_sqlite_store(path)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return _connect(config, str(path))


def load_connection_config(path: os.PathLike) -> message.Message:
    """Reads a ConnectionConfig (MySQL, SQLite) or MetadataStoreClientConfig (gRPC server).

    The file is text proto, or JSON when it ends in .json.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LineageError(f"cannot read the metadata connection config {path}: {e}") from e
    parse = json_format.Parse if path.suffix == ".json" else text_format.Parse
    for kind in (metadata_store_pb2.ConnectionConfig, metadata_store_pb2.MetadataStoreClientConfig):
        try:
            return parse(text, kind())
        except (json_format.ParseError, text_format.ParseError):
            continue
    raise LineageError(
        f"{path} is neither an MLMD ConnectionConfig nor a MetadataStoreClientConfig, "
        'e.g. mysql { host: "db" port: 3306 database: "mlmd" user: "u" password: "p" }'
    )


def _check_sqlite_store(path: pathlib.Path) -> None:
    hint = "point --metadata at a pipeline's metadata.sqlite (run `mlbandits train` to make one)"
    if not path.is_file():
        raise LineageError(f"no ML Metadata store at {path}; {hint}")
    if path.stat().st_size == 0:
        raise LineageError(f"{path} is an empty file, not an ML Metadata store; {hint}")
    with path.open("rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise LineageError(f"{path} is not a SQLite database (corrupt or another file); {hint}")
    missing = MLMD_TABLES - _sqlite_tables(path, hint)
    if missing:
        raise LineageError(
            f"{path} is a SQLite database without ML Metadata tables "
            f"(missing {', '.join(sorted(missing))}); {hint}"
        )


def _sqlite_tables(path: pathlib.Path, hint: str) -> Set[str]:
    """Table names only: the catalogue tells a foreign database from an MLMD store."""
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            return {
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
    except sqlite3.DatabaseError as e:
        raise LineageError(f"{path} is a corrupt SQLite database ({e}); {hint}") from e


def _connect(config: message.Message, where: str) -> metadata_store.MetadataStore:
    try:
        return metadata_store.MetadataStore(config)
    except (mlmd_errors.StatusError, RuntimeError) as e:  # a failed MySQL connect is a RuntimeError
        raise LineageError(
            f"cannot open {where} (is its server reachable, the schema current?): {e}"
        ) from e


def by_property(fetch: Callable[..., list], condition: str, rest: str) -> list:
    """Artifacts or executions whose typed or custom property meets `condition`.

    One query per kind of property: MLMD joins property tables so that an OR
    across both kinds matches nothing.
    """
    found = {}
    for field in ("properties", "custom_properties"):
        options = metadata_store.ListOptions(filter_query=f"{field}.{condition} AND {rest}")
        for item in fetch(list_options=options):
            found[item.id] = item
    return sorted(found.values(), key=lambda item: item.id)


def string_property(artifact: metadata_store_pb2.Artifact, name: str) -> str:
    """A string from the typed or the custom properties: components record either."""
    value = artifact.properties.get(name) or artifact.custom_properties.get(name)
    return value.string_value if value is not None else ""


def custom_string(artifact: metadata_store_pb2.Artifact, name: str) -> str:
    """A string custom property or "": the Pusher records its version and destination there."""
    value = artifact.custom_properties.get(name)
    return value.string_value if value is not None else ""


def iso_time(ms_since_epoch: int) -> str:
    """MLMD's milliseconds since the epoch as UTC ISO 8601; "" when there is no time (0)."""
    if not ms_since_epoch:
        return ""
    moment = datetime.datetime.fromtimestamp(ms_since_epoch / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def context_order(context: metadata_store_pb2.Context) -> Tuple[int, int]:
    """Creation order; the id breaks ties between contexts made in the same millisecond."""
    return (context.create_time_since_epoch, context.id)


def artifact_order(artifact: metadata_store_pb2.Artifact) -> Tuple[int, int]:
    """Creation order; the id breaks ties between artifacts made in the same millisecond."""
    return (artifact.create_time_since_epoch, artifact.id)
