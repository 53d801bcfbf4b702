"""BigQuery's naming rules for the project, dataset and table ids serving writes to.

The ids go into SQL text and API paths; checking them at start-up against
BigQuery's own rules turns a typo (or a backtick) into a named error before
the first request, instead of queries that fail, or do something else, later.
"""

import re
import unicodedata

# Google Cloud project ids: 6-30 of a-z, 0-9 and '-', a letter first, no '-' last;
# older projects may carry a domain prefix, as in "example.com:my-project".
_PROJECT_ID = re.compile(r"(?:[a-z0-9][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_DATASET_ID = re.compile(r"[A-Za-z0-9_]{1,1024}")
_TABLE_ID_MAX_BYTES = 1024
# Letters, marks, numbers, connectors (such as '_'), dashes and spaces.
_TABLE_ID_CATEGORIES = ("L", "M", "N", "Pc", "Pd", "Zs")


def check_project_id(value: str) -> None:
    """Raises ValueError saying which rule `value` breaks."""
    if not _PROJECT_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} is no Google Cloud project id: 6 to 30 lowercase letters, digits or "
            "hyphens, starting with a letter and not ending with a hyphen"
        )


def check_dataset_id(value: str) -> None:
    """Raises ValueError saying which rule `value` breaks."""
    if not _DATASET_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} is no BigQuery dataset id: 1 to 1024 ASCII letters, digits or underscores"
        )


def check_table_id(value: str) -> None:
    """Raises ValueError saying which rule `value` breaks."""
    size = len(value.encode("utf-8"))
    bad = [c for c in value if not unicodedata.category(c).startswith(_TABLE_ID_CATEGORIES)]
    if not 1 <= size <= _TABLE_ID_MAX_BYTES or bad:
        found = f"; {bad[0]!r} is not allowed" if bad else ""
        raise ValueError(
            f"{value!r} is no BigQuery table id: 1 to 1024 bytes of letters, marks, numbers, "
            f"connectors such as '_', dashes or spaces{found}"
        )
