"""Names of the logged-interaction fields shared by every stage.

The Generator and the serving logger write them to BigQuery, ExampleGen's
query selects them, the schema constrains them and the Trainer reads them: one
list keeps all four in step.
"""

USER_ID = "user_id"
OBSERVATION = "observation"
ACTION = "action"
REWARD = "reward"
PROPENSITY = "propensity"
EVENT_TIME_US = "event_time_us"

EXAMPLE_FEATURES = (USER_ID, OBSERVATION, ACTION, REWARD, PROPENSITY, EVENT_TIME_US)
