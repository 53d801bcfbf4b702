"""A pure NumPy MovieLens contextual bandit, equivalent to TF-Agents'.

`tf_agents.bandits.environments.movielens_py_environment.MovieLensPyEnvironment`
keeps the first `num_movies` columns of the ratings matrix, drops users with no
rating among them, and factorises the rest with a rank-k SVD: a user's context
is their row of `U_k sqrt(S_k)` and the reward of movie `j` is entry `j` of the
rank-k reconstruction. That class hides the tables behind a stateful,
`random`-module-driven `step`, which makes exact policy values and regret
awkward to compute. Here the same tables are an immutable value and every
quantity (sampling, rewards, policy value, regret) is a pure function of it and
an explicit `numpy.random.Generator`.
"""

import dataclasses

import numpy as np

# Absolute tolerance for probability rows summing to one.
_PROBABILITY_ATOL = 1e-6


@dataclasses.dataclass(frozen=True, eq=False)
class MovieLensBandit:
    """The kept users' contexts and their deterministic reward table.

    Attributes:
      user_ids: (num_users,) original 1-based MovieLens ids of the kept users;
        row `i` of the other arrays belongs to `user_ids[i]`.
      observations: (num_users, rank_k) float64 contexts, `U_k sqrt(S_k)`.
      reward_table: (num_users, num_actions) float64 rank-k ratings estimate.
    """

    user_ids: np.ndarray
    observations: np.ndarray
    reward_table: np.ndarray

    def __post_init__(self) -> None:
        user_ids = np.array(self.user_ids, dtype=np.int64)
        observations = np.array(self.observations, dtype=np.float64)
        reward_table = np.array(self.reward_table, dtype=np.float64)
        if reward_table.ndim != 2 or 0 in reward_table.shape:
            raise ValueError(
                f"reward_table must be a non-empty 2-D array, got shape "
                f"{reward_table.shape}."
            )
        if user_ids.shape != reward_table.shape[:1]:
            raise ValueError(
                f"user_ids shape {user_ids.shape} does not match "
                f"{reward_table.shape[0]} reward_table rows."
            )
        if observations.ndim != 2 or observations.shape[0] != reward_table.shape[0]:
            raise ValueError(
                f"observations shape {observations.shape} must be "
                f"({reward_table.shape[0]}, observation_dim)."
            )
        for name, array in (
            ("user_ids", user_ids),
            ("observations", observations),
            ("reward_table", reward_table),
        ):
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def num_users(self) -> int:
        return int(self.reward_table.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.reward_table.shape[1])

    @property
    def observation_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def optimal_actions(self) -> np.ndarray:
        """Per-user best action; ties go to the lowest index, as in TF-Agents."""
        return np.argmax(self.reward_table, axis=1)

    @property
    def optimal_rewards(self) -> np.ndarray:
        return np.max(self.reward_table, axis=1)


def build_movielens_bandit(
    ratings_matrix: np.ndarray, rank_k: int = 20, num_actions: int = 20
) -> MovieLensBandit:
    """Builds the bandit exactly as `MovieLensPyEnvironment` does.

    Args:
      ratings_matrix: users x items ratings, 0 where unrated (see
        `movielens_data.ratings_matrix`). Row `i` is MovieLens user `i + 1`.
      rank_k: rank of the SVD approximation, i.e. the context dimension. At
        most min(kept users, num_actions), so contexts really have `rank_k`
        dimensions (TF-Agents would silently return fewer).
      num_actions: the first `num_actions` movies become the arms.

    Raises:
      ValueError: on a non-2-D or non-finite matrix, out-of-range arguments,
        or when no user rated any of the first `num_actions` movies.
    """
    matrix = np.asarray(ratings_matrix, dtype=np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(
            f"ratings_matrix must be a non-empty 2-D array, got shape {matrix.shape}."
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError("ratings_matrix contains NaN or infinite values.")
    _check_int("num_actions", num_actions, 1, matrix.shape[1])
    kept = matrix[:, :num_actions]
    rated = np.sum(kept, axis=1) > 0.0
    if not rated.any():
        raise ValueError(f"No user rated any of the first {num_actions} movies.")
    kept = kept[rated]
    _check_int("rank_k", rank_k, 1, min(kept.shape))

    u, s, vh = np.linalg.svd(kept, full_matrices=False)
    scale = np.sqrt(s[:rank_k])
    u_hat = u[:, :rank_k] * scale
    v_hat = (vh[:rank_k, :].T * scale).T
    return MovieLensBandit(
        user_ids=np.flatnonzero(rated) + 1,
        observations=u_hat,
        reward_table=u_hat @ v_hat,
    )


def _check_int(name: str, value: int, low: int, high: int) -> None:
    """Rejects non-integers (including bools) and values outside low..high."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}.")


def sample_users(
    bandit: MovieLensBandit, n: int, rng: np.random.Generator, replace: bool = True
) -> np.ndarray:
    """Draws `n` user row indices uniformly.

    With replacement (the default) draws are i.i.d., matching the uniform user
    weighting of `policy_value`; `replace=False` mirrors one TF-Agents batch.
    """
    limit = bandit.num_users if not replace else np.iinfo(np.int64).max
    _check_int("n", n, 0, limit)
    return rng.choice(bandit.num_users, size=n, replace=replace)


def expected_reward(
    bandit: MovieLensBandit, users: np.ndarray, actions: np.ndarray
) -> np.ndarray:
    """Reward of each (user row, action) pair; broadcasts like NumPy.

    Rewards are deterministic in this environment, so this is also the
    realised reward. Negative indices are rejected rather than wrapped.
    """
    users = _as_indices("users", users, bandit.num_users)
    actions = _as_indices("actions", actions, bandit.num_actions)
    return bandit.reward_table[users, actions]


def _as_indices(name: str, values: np.ndarray, size: int) -> np.ndarray:
    """Validates an integer index array against 0..size-1."""
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}.")
    if array.size and (array.min() < 0 or array.max() >= size):
        raise ValueError(f"{name} must be in 0..{size - 1}.")
    return array


def policy_value(
    bandit: MovieLensBandit, action_probabilities: np.ndarray
) -> float:
    """Exact expected reward of a stochastic policy, users uniformly weighted.

    Args:
      action_probabilities: (num_users, num_actions); row `i` is the policy's
        action distribution for user row `i`. A (num_actions,) vector is a
        context-free policy applied to every user.

    Raises:
      ValueError: on a wrong shape, negative entries or rows not summing to 1.
    """
    probabilities = np.asarray(action_probabilities, dtype=np.float64)
    shape = (bandit.num_users, bandit.num_actions)
    if probabilities.shape not in (shape, shape[1:]):
        raise ValueError(
            f"action_probabilities must have shape {shape} or {shape[1:]}, "
            f"got {probabilities.shape}."
        )
    if not np.all(np.isfinite(probabilities)) or np.any(probabilities < 0.0):
        raise ValueError("action_probabilities must be finite and non-negative.")
    row_sums = probabilities.sum(axis=-1)
    if not np.allclose(row_sums, 1.0, rtol=0.0, atol=_PROBABILITY_ATOL):
        raise ValueError("Each row of action_probabilities must sum to 1.")
    weighted = np.broadcast_to(probabilities, shape) * bandit.reward_table
    per_user = np.sum(weighted, axis=1)
    return float(np.mean(per_user))


def uniform_random_value(bandit: MovieLensBandit) -> float:
    """Value of picking every action with equal probability."""
    return float(np.mean(bandit.reward_table))


def oracle_value(bandit: MovieLensBandit) -> float:
    """Value of always picking each user's best action: the regret baseline."""
    return float(np.mean(bandit.optimal_rewards))


def regret(
    bandit: MovieLensBandit, users: np.ndarray, actions: np.ndarray
) -> np.ndarray:
    """Per-step regret: the user's optimal reward minus the chosen action's."""
    rewards = expected_reward(bandit, users, actions)
    users = np.asarray(users)
    return bandit.optimal_rewards[users] - rewards
