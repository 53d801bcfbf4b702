"""Where the logged, prediction and reward tables live, shared by every writer and reader."""

import dataclasses

from bandit_core.errors import require as _require


@dataclasses.dataclass(frozen=True)
class BigQueryConfig:
    """The logged-interactions table and, locally, the emulator in front of it."""

    project: str = "local-proj"
    dataset: str = "mlbandits"
    table: str = "logged_interactions"
    predictions_table: str = "predictions"
    rewards_table: str = "rewards"
    items_table: str = "items"
    # Rows that break the data contract, copied here with their reasons at ingestion.
    quarantine_table: str = "quarantine"
    scratch_dataset: str = "mlbandits_scratch"
    use_emulator: bool = True
    emulator_data_dir: str = ""

    @property
    def table_ref(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def validate(self) -> None:
        for field in (
            "project", "table", "predictions_table", "rewards_table", "items_table",
            "quarantine_table",
        ):
            value = getattr(self, field)
            _require(
                bool(value) and all(c.isalnum() or c in "_-" for c in value),
                f"bigquery.{field}",
                f"{value!r} must be a non-empty BigQuery name (letters, digits, _ or -)",
            )
        for field in ("dataset", "scratch_dataset"):
            value = getattr(self, field)
            _require(
                bool(value) and all(c.isalnum() or c == "_" for c in value),
                f"bigquery.{field}",
                f"{value!r} must be a non-empty dataset id (letters, digits or _; no -)",
            )
        logs = (self.table, self.predictions_table, self.rewards_table, self.items_table)
        _require(
            self.quarantine_table not in logs,
            "bigquery.quarantine_table",
            f"{self.quarantine_table!r} must differ from the tables it quarantines rows of",
        )
        _require(
            self.scratch_dataset != self.dataset,
            "bigquery.scratch_dataset",
            "must differ from bigquery.dataset: scratch tables are dropped after reads",
        )
