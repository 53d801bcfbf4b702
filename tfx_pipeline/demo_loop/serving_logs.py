"""Questions about the serving logs that the trigger and the demo ask BigQuery."""

import datetime
from typing import Optional

from google.api_core import exceptions
from google.cloud import bigquery


def count_rewarded_events(
    client: bigquery.Client, rewards_table_id: str, since: Optional[datetime.datetime] = None
) -> int:
    """Distinct event ids rewarded after `since` (all of them when None).

    A table that does not exist yet (nothing was ever rewarded) counts as 0.
    """
    query = f"SELECT COUNT(DISTINCT event_id) AS n FROM `{rewards_table_id}`"
    parameters = []
    if since is not None:
        query += " WHERE reward_time > @since"
        parameters.append(bigquery.ScalarQueryParameter("since", "TIMESTAMP", since))
    job_config = bigquery.QueryJobConfig(query_parameters=parameters)
    try:
        return int(next(iter(client.query(query, job_config=job_config).result()))["n"])
    except exceptions.NotFound:
        return 0
