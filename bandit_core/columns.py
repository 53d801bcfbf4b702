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

# Per-arm rows: `observation` holds the user's global features and `action`
# the served movie's position among the candidates.
CANDIDATE_MOVIE_IDS = "candidate_movie_ids"
MOVIE_ID = "movie_id"
# Joined from the items table at ingestion: the served movie's features.
ARM_FEATURES = "arm_features"
# Computed at ingestion so the schema can check them: 1 when the served movie
# sits at the logged position among the candidates, and how many candidates
# are distinct.
CHOSEN_AT_SLOT = "chosen_at_slot"
DISTINCT_CANDIDATES = "distinct_candidates"

PER_ARM_EXAMPLE_FEATURES = EXAMPLE_FEATURES + (
    CANDIDATE_MOVIE_IDS,
    MOVIE_ID,
    ARM_FEATURES,
    CHOSEN_AT_SLOT,
    DISTINCT_CANDIDATES,
)

# The items table: one row per movie and feature version, ingested as the
# single split of the items ExampleGen.
ITEMS_SPLIT = "items"
FEATURE_VERSION = "feature_version"
FEATURES = "features"
