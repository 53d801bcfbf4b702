"""The per-arm MovieLens problem in NumPy, equivalent to TF-Agents'.

`tf_agents.bandits.environments.movielens_per_arm_py_environment
.MovieLensPerArmPyEnvironment` factorises the whole users x movies ratings
matrix (0 where unrated, neither centred nor scaled) with an SVD,
`A ~= U_k Sigma_k V_k^T`. A user's global features are their row of `U_k`, a
movie's arm features its row of `V_k`, and the reward of recommending movie `m`
to user `u` is `U_k[u] Sigma_k V_k[m]^T`, without noise. Each round draws
users uniformly and, for each, distinct candidate movies uniformly from the
whole catalogue. That class hides all this behind a stateful step driven by the
global `random` and `numpy.random` states. Here the factors are an immutable
value, and sampling, rewards (optionally with Gaussian noise), the oracle,
regret and policy values are pure functions of it and an explicit
`numpy.random.Generator`. TF-Agents rounds the factors to float32; they stay
float64 here.

Ids: the API names users and movies by their MovieLens ids, 1-based as in
`u.data`; row `id - 1` of a factor or feature array belongs to that id. A
policy's choice is the 0-based position of a movie in its row of candidates.

Optional side features (user demographics, movie genres and release year) only
widen the feature vectors: rewards depend on the SVD factors alone.
"""

import dataclasses
import pathlib
from typing import NamedTuple, Optional, Tuple, Union

import numpy as np

from simulation import movielens_data

# Divisors that bring MovieLens ages and release years into about [0, 1].
AGE_SCALE = 100.0
YEAR_ORIGIN = 1900
YEAR_SCALE = 100.0
# Age, gender one-hot, occupation one-hot.
DEMOGRAPHICS_DIM = 1 + len(movielens_data.GENDERS) + len(movielens_data.OCCUPATIONS)
# Genre flags, release year.
METADATA_DIM = len(movielens_data.GENRES) + 1


@dataclasses.dataclass(frozen=True, eq=False)
class MovieLensPerArmBandit:
    """The rank-k SVD factors of the ratings matrix and optional side features.

    Attributes:
      user_vectors: [num_users, rank_k] float64 `U_k`; row `user_id - 1`.
      singular_values: [rank_k] float64 diagonal of `Sigma_k`, descending.
      movie_vectors: [num_movies, rank_k] float64 `V_k`; row `movie_id - 1`.
      user_demographics: [num_users, 0 or DEMOGRAPHICS_DIM] float64 columns
        `[age / AGE_SCALE, gender one-hot in GENDERS order, occupation one-hot
        in OCCUPATIONS order]`, or no columns when built without users.
      movie_metadata: [num_movies, 0 or METADATA_DIM] float64 columns
        `[genre flags in GENRES order, (year - YEAR_ORIGIN) / YEAR_SCALE]`, or
        no columns when built without items. An unknown year holds the mean of
        the known ones, so it reads as a typical movie rather than an old one.
    """

    user_vectors: np.ndarray
    singular_values: np.ndarray
    movie_vectors: np.ndarray
    user_demographics: np.ndarray
    movie_metadata: np.ndarray

    def __post_init__(self) -> None:
        arrays = {
            field.name: np.array(getattr(self, field.name), dtype=np.float64)
            for field in dataclasses.fields(self)
        }
        for name, array in arrays.items():
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name} contains NaN or infinite values.")
        rank_k = arrays["singular_values"].shape
        if len(rank_k) != 1 or rank_k[0] == 0:
            raise ValueError(
                f"singular_values must be a non-empty 1-D array, got shape {rank_k}."
            )
        for vectors, extras in (
            ("user_vectors", "user_demographics"),
            ("movie_vectors", "movie_metadata"),
        ):
            shape = arrays[vectors].shape
            if len(shape) != 2 or shape[0] == 0 or shape[1:] != rank_k:
                raise ValueError(
                    f"{vectors} must have shape [count, {rank_k[0]}] with count "
                    f">= 1, got {shape}."
                )
            if arrays[extras].ndim != 2 or arrays[extras].shape[0] != shape[0]:
                raise ValueError(
                    f"{extras} must have shape [{shape[0]}, dim], got "
                    f"{arrays[extras].shape}."
                )
        for name, array in arrays.items():
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def num_users(self) -> int:
        return int(self.user_vectors.shape[0])

    @property
    def num_movies(self) -> int:
        return int(self.movie_vectors.shape[0])

    @property
    def rank_k(self) -> int:
        return int(self.singular_values.shape[0])

    @property
    def global_dim(self) -> int:
        """Width of `global_features`: rank_k, plus DEMOGRAPHICS_DIM if any."""
        return self.rank_k + int(self.user_demographics.shape[1])

    @property
    def arm_dim(self) -> int:
        """Width of `arm_features`: rank_k, plus METADATA_DIM if any."""
        return self.rank_k + int(self.movie_metadata.shape[1])


def item_feature_version(rank_k: int, movie_metadata: bool = False) -> str:
    """Names the movie features `arm_features` gives a bandit built with these settings.

    Stored with every items-table row and policy catalogue, so a policy is
    never served or trained with movie features of another kind.
    """
    return f"movielens-svd-k{rank_k}" + ("-genres-year" if movie_metadata else "")


class RoundBatch(NamedTuple):
    """One batch of rounds: a user and their candidate movies per row.

    Attributes:
      user_ids: [N] int64 MovieLens user ids.
      candidate_ids: [N, C] int64 MovieLens movie ids, distinct within a row.
    """

    user_ids: np.ndarray
    candidate_ids: np.ndarray


def build_per_arm_bandit(
    ratings_matrix: np.ndarray,
    rank_k: int = 20,
    users: Optional[movielens_data.Users] = None,
    items: Optional[movielens_data.Items] = None,
) -> MovieLensPerArmBandit:
    """Builds the bandit exactly as `MovieLensPerArmPyEnvironment` does.

    Args:
      ratings_matrix: [num_users, num_movies] ratings, 0 where unrated (see
        `movielens_data.ratings_matrix`). Row `i` is user `i + 1`, column `j`
        movie `j + 1`.
      rank_k: how many singular triplets to keep; the SVD feature dimension.
      users: parsed `u.user` covering each user id once; adds demographics to
        the global features. None leaves them out.
      items: parsed `u.item` covering each movie id once; adds genres and the
        release year to the arm features. None leaves them out.

    Raises:
      ValueError: on a non-2-D or non-finite matrix, `rank_k` outside
        1..min(matrix shape), or users/items that do not cover each id once.
    """
    matrix = np.asarray(ratings_matrix, dtype=np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(
            f"ratings_matrix must be a non-empty 2-D array, got shape {matrix.shape}."
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError("ratings_matrix contains NaN or infinite values.")
    _check_int("rank_k", rank_k, 1, min(matrix.shape))
    num_users, num_movies = matrix.shape

    demographics = np.zeros((num_users, 0))
    if users is not None:
        demographics = _demographics(users, num_users)
    metadata = np.zeros((num_movies, 0))
    if items is not None:
        metadata = _metadata(items, num_movies)
    u, s, vh = np.linalg.svd(matrix, full_matrices=False)
    return MovieLensPerArmBandit(
        user_vectors=u[:, :rank_k],
        singular_values=s[:rank_k],
        movie_vectors=vh[:rank_k].T,
        user_demographics=demographics,
        movie_metadata=metadata,
    )


def _demographics(users: movielens_data.Users, num_users: int) -> np.ndarray:
    """[num_users, DEMOGRAPHICS_DIM] demographic features by user row."""
    rows = _rows_by_id("users", users.user_id, num_users)
    gender = _one_hot("users.gender", users.gender, movielens_data.GENDERS)
    occupation = _one_hot(
        "users.occupation", users.occupation, movielens_data.OCCUPATIONS
    )
    features = np.empty((num_users, DEMOGRAPHICS_DIM))
    features[rows] = np.column_stack(
        [np.asarray(users.age) / AGE_SCALE, gender, occupation]
    )
    return features


def _metadata(items: movielens_data.Items, num_movies: int) -> np.ndarray:
    """[num_movies, METADATA_DIM] genre and release-year features by movie row."""
    rows = _rows_by_id("items", items.item_id, num_movies)
    genres = np.asarray(items.genres, dtype=np.float64)
    if genres.shape != (rows.size, len(movielens_data.GENRES)):
        raise ValueError(
            f"items.genres must have shape [{rows.size}, "
            f"{len(movielens_data.GENRES)}], got {genres.shape}."
        )
    years = np.asarray(items.release_year)
    known = years != movielens_data.MISSING_YEAR
    if not known.any():
        raise ValueError(
            "items.release_year has no known year to stand in for missing ones."
        )
    scaled = (years - YEAR_ORIGIN) / YEAR_SCALE
    scaled = np.where(known, scaled, scaled[known].mean())
    features = np.empty((num_movies, METADATA_DIM))
    features[rows] = np.column_stack([genres, scaled])
    return features


def _rows_by_id(name: str, ids: np.ndarray, count: int) -> np.ndarray:
    """Rows `id - 1`, insisting that the ids are exactly 1..count in any order."""
    ids = np.asarray(ids)
    expected = np.arange(1, count + 1)
    if ids.shape != (count,) or not np.array_equal(np.sort(ids), expected):
        raise ValueError(f"{name} must list each id 1..{count} exactly once.")
    return ids - 1


def _one_hot(name: str, values: np.ndarray, vocabulary: Tuple[str, ...]) -> np.ndarray:
    """[len(values), len(vocabulary)] float64 one-hot rows."""
    encoded = np.asarray(values)[:, None] == np.array(vocabulary)
    if not np.all(encoded.sum(axis=1) == 1):
        raise ValueError(f"{name} values must be one of {vocabulary}.")
    return encoded.astype(np.float64)


def sample_round(
    bandit: MovieLensPerArmBandit,
    batch_size: int,
    num_candidates: int,
    rng: np.random.Generator,
) -> RoundBatch:
    """Draws users uniformly and, per user, distinct candidates from all movies.

    As in TF-Agents, users are drawn with replacement across the batch, and
    each row's candidates are a uniformly random ordered sample without
    replacement from the whole catalogue.

    Returns:
      user_ids: [batch_size]; candidate_ids: [batch_size, num_candidates].
    """
    _check_int("batch_size", batch_size, 1)
    _check_int("num_candidates", num_candidates, 1, bandit.num_movies)
    _check_rng(rng)
    user_ids = rng.integers(1, bandit.num_users + 1, size=batch_size, dtype=np.int64)
    rows = [
        rng.choice(bandit.num_movies, size=num_candidates, replace=False)
        for _ in range(batch_size)
    ]
    candidate_ids = np.stack(rows).astype(np.int64) + 1
    return RoundBatch(user_ids=user_ids, candidate_ids=candidate_ids)


def global_features(bandit: MovieLensPerArmBandit, user_ids: np.ndarray) -> np.ndarray:
    """[N, global_dim] features: the user's `U_k` row, then demographics."""
    rows = _as_ids("user_ids", user_ids, bandit.num_users) - 1
    return np.concatenate(
        [bandit.user_vectors[rows], bandit.user_demographics[rows]], axis=-1
    )


def arm_features(bandit: MovieLensPerArmBandit, movie_ids: np.ndarray) -> np.ndarray:
    """[N, C, arm_dim] features for [N, C] movie ids (any shape [...] works).

    Each is the movie's `V_k` row, then its genres and release year.
    """
    rows = _as_ids("movie_ids", movie_ids, bandit.num_movies) - 1
    return np.concatenate(
        [bandit.movie_vectors[rows], bandit.movie_metadata[rows]], axis=-1
    )


def expected_rewards(
    bandit: MovieLensPerArmBandit, user_ids: np.ndarray, movie_ids: np.ndarray
) -> np.ndarray:
    """`U_k[u] Sigma_k V_k[m]^T` for each row's user and movie(s).

    Args:
      user_ids: [N] user ids.
      movie_ids: [N] (one movie per row) or [N, C] (candidates per row).

    Returns:
      float64 rewards with the shape of `movie_ids`.
    """
    users = _as_ids("user_ids", user_ids, bandit.num_users)
    movies = _as_ids("movie_ids", movie_ids, bandit.num_movies)
    if users.ndim != 1:
        raise ValueError(f"user_ids must have shape [N], got {users.shape}.")
    if movies.ndim not in (1, 2) or movies.shape[0] != users.shape[0]:
        raise ValueError(
            f"movie_ids must have shape [N] or [N, C] with N = {users.shape[0]} "
            f"(the length of user_ids), got {movies.shape}."
        )
    scaled_users = bandit.user_vectors[users - 1] * bandit.singular_values
    return np.einsum("nk,n...k->n...", scaled_users, bandit.movie_vectors[movies - 1])


def observed_rewards(
    bandit: MovieLensPerArmBandit,
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    rng: np.random.Generator,
    noise_sd: float = 0.0,
) -> np.ndarray:
    """Expected rewards plus independent N(0, noise_sd^2) noise.

    The noise is drawn whatever `noise_sd` is, so one seed gives the same
    stream at every noise level; `noise_sd=0` returns the expected rewards
    exactly, as TF-Agents does. Shapes are as in `expected_rewards`.
    """
    if isinstance(noise_sd, bool) or not isinstance(noise_sd, (int, float, np.number)):
        raise ValueError(f"noise_sd must be a number, got {noise_sd!r}.")
    if not (np.isfinite(noise_sd) and noise_sd >= 0.0):
        raise ValueError(f"noise_sd must be finite and >= 0, got {noise_sd}.")
    _check_rng(rng)
    expected = expected_rewards(bandit, user_ids, movie_ids)
    return expected + noise_sd * rng.standard_normal(expected.shape)


def chosen_movie_ids(candidate_ids: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """[N] movie ids at the [N] chosen 0-based positions of [N, C] candidates."""
    candidates = np.asarray(candidate_ids)
    if candidates.ndim != 2:
        raise ValueError(
            f"candidate_ids must have shape [N, C], got {candidates.shape}."
        )
    positions = _as_indices("chosen", chosen, candidates.shape[1])
    if positions.shape != candidates.shape[:1]:
        raise ValueError(
            f"chosen must have shape [{candidates.shape[0]}] (one position per "
            f"row of candidate_ids), got {positions.shape}."
        )
    return candidates[np.arange(candidates.shape[0]), positions]


def oracle(
    bandit: MovieLensPerArmBandit, user_ids: np.ndarray, candidate_ids: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Best candidate per row by expected reward.

    Returns:
      positions: [N] 0-based positions in each row; ties go to the lowest, as
        with TF-Agents' argmax. rewards: [N] their expected rewards.
    """
    rewards = _candidate_rewards(bandit, user_ids, candidate_ids)
    positions = np.argmax(rewards, axis=1)
    return positions, rewards[np.arange(rewards.shape[0]), positions]


def oracle_value(
    bandit: MovieLensPerArmBandit, user_ids: np.ndarray, candidate_ids: np.ndarray
) -> float:
    """Mean expected reward of always choosing each row's best candidate."""
    return float(np.mean(oracle(bandit, user_ids, candidate_ids)[1]))


def regret(
    bandit: MovieLensPerArmBandit,
    user_ids: np.ndarray,
    candidate_ids: np.ndarray,
    chosen: np.ndarray,
) -> np.ndarray:
    """[N] best expected reward in the row minus that of the chosen position."""
    best = oracle(bandit, user_ids, candidate_ids)[1]
    return best - expected_rewards(
        bandit, user_ids, chosen_movie_ids(candidate_ids, chosen)
    )


def policy_value(
    bandit: MovieLensPerArmBandit,
    user_ids: np.ndarray,
    candidate_ids: np.ndarray,
    chosen: np.ndarray,
) -> float:
    """Mean expected reward of the [N] chosen positions over the rounds."""
    movies = chosen_movie_ids(candidate_ids, chosen)
    return float(np.mean(expected_rewards(bandit, user_ids, movies)))


def uniform_random_value(
    bandit: MovieLensPerArmBandit, user_ids: np.ndarray, candidate_ids: np.ndarray
) -> float:
    """Exact value over the rounds of choosing a candidate uniformly at random."""
    return float(np.mean(_candidate_rewards(bandit, user_ids, candidate_ids)))


def _candidate_rewards(
    bandit: MovieLensPerArmBandit, user_ids: np.ndarray, candidate_ids: np.ndarray
) -> np.ndarray:
    """[N, C] expected rewards, insisting on a 2-D candidate array."""
    if np.ndim(candidate_ids) != 2:
        raise ValueError(
            f"candidate_ids must have shape [N, C], got {np.shape(candidate_ids)}."
        )
    return expected_rewards(bandit, user_ids, candidate_ids)


def _check_int(name: str, value: int, low: int, high: Optional[int] = None) -> None:
    """Rejects non-integers (including bools) and values outside low..high."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if high is None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}.")
    if high is not None and not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}.")


def _check_rng(rng: np.random.Generator) -> None:
    """Insists on a Generator so every draw comes from the caller's stream."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}."
        )


def _as_ids(name: str, values: np.ndarray, count: int) -> np.ndarray:
    """Validates an integer array of 1-based ids against 1..count."""
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer ids, got dtype {array.dtype}.")
    outside = array[(array < 1) | (array > count)]
    if outside.size:
        raise ValueError(f"{name} must be in 1..{count}, got {outside.flat[0]}.")
    return array


def _as_indices(name: str, values: np.ndarray, size: int) -> np.ndarray:
    """Validates an integer array of 0-based positions against 0..size-1."""
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}.")
    outside = array[(array < 0) | (array >= size)]
    if outside.size:
        raise ValueError(f"{name} must be in 0..{size - 1}, got {outside.flat[0]}.")
    return array


def load_per_arm_bandit(
    data_dir: Union[str, pathlib.Path],
    rank_k: int = 20,
    user_demographics: bool = False,
    movie_metadata: bool = False,
) -> MovieLensPerArmBandit:
    """Finds (or downloads) MovieLens 100K and builds the per-arm bandit.

    An empty `data_dir` means the default location (see
    `movielens_data.default_data_dir`). `u.user` and `u.item` are read only
    when their features are asked for.
    """
    directory = movielens_data.find_movielens(data_dir)
    ratings = movielens_data.load_ratings(directory)
    return build_per_arm_bandit(
        movielens_data.ratings_matrix(ratings),
        rank_k=rank_k,
        users=movielens_data.load_users(directory) if user_demographics else None,
        items=movielens_data.load_items(directory) if movie_metadata else None,
    )
