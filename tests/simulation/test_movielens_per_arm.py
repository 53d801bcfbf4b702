"""Tests for simulation.movielens_per_arm.

The parity test builds TF-Agents' MovieLensPerArmPyEnvironment on the real
u.data and skips when it is absent; the rest use hand-made factors whose
rewards can be checked by hand, or small random ratings matrices.
"""

import random
from pathlib import Path

import numpy as np
import pytest

from simulation import movielens_data as md
from simulation import movielens_per_arm as pa

# Two users, four movies, Sigma = diag(2, 1). Expected rewards:
#   user 1: [2, 0, 1, 0]; user 2: [0, 1, 0.5, -1].
_USER_VECTORS = np.array([[1.0, 0.0], [0.0, 1.0]])
_SINGULAR_VALUES = np.array([2.0, 1.0])
_MOVIE_VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.0, -1.0]])
_USERS = np.array([1, 2])
_CANDIDATES = np.array([[1, 2, 3], [4, 3, 2]])


def _tiny_bandit() -> pa.MovieLensPerArmBandit:
    return pa.MovieLensPerArmBandit(
        user_vectors=_USER_VECTORS,
        singular_values=_SINGULAR_VALUES,
        movie_vectors=_MOVIE_VECTORS,
        user_demographics=np.zeros((2, 0)),
        movie_metadata=np.zeros((4, 0)),
    )


def _random_bandit(
    num_users: int, num_movies: int, rank_k: int
) -> pa.MovieLensPerArmBandit:
    matrix = np.random.default_rng(0).integers(0, 6, size=(num_users, num_movies))
    return pa.build_per_arm_bandit(matrix.astype(float), rank_k=rank_k)


def _real_data_dir() -> Path:
    data_dir = md.default_data_dir()
    if not (data_dir / md.RATINGS_FILE).is_file():
        pytest.skip(
            f"MovieLens 100K not found at {data_dir}; set {md.DATA_DIR_ENV_VAR} "
            f"to a directory containing u.data to run this test."
        )
    return data_dir


@pytest.fixture(scope="module")
def real_matrix() -> np.ndarray:
    return md.ratings_matrix(md.load_ratings(_real_data_dir()))


@pytest.fixture(scope="module")
def real_bandit(real_matrix) -> pa.MovieLensPerArmBandit:
    return pa.build_per_arm_bandit(real_matrix, rank_k=20)


def test_matches_tf_agents_environment(real_bandit):
    from tf_agents.bandits.environments import movielens_per_arm_py_environment

    batch_size, num_actions = 8, 50
    theirs = movielens_per_arm_py_environment.MovieLensPerArmPyEnvironment(
        str(_real_data_dir() / "u.data"),
        rank_k=20,
        batch_size=batch_size,
        num_actions=num_actions,
        csv_delimiter="\t",
    )
    # TF-Agents rounds the factors to float32 before multiplying, so entries
    # agree to float32 precision relative to the largest reward, not each
    # entry's own (possibly near-zero) size.
    table = theirs._approx_ratings_matrix
    close = dict(rtol=1e-6, atol=1e-6 * np.abs(table).max())
    users = np.arange(1, md.NUM_USERS + 1)
    every_movie = np.tile(np.arange(1, md.NUM_ITEMS + 1), (md.NUM_USERS, 1))
    np.testing.assert_allclose(
        pa.expected_rewards(real_bandit, users, every_movie), table, **close
    )
    np.testing.assert_allclose(real_bandit.singular_values, theirs._s_hat, rtol=1e-6)

    # Singular vectors are defined up to a sign per component, flipped in
    # U and V together, so u Sigma v^T is unaffected.
    signs = np.sign(np.sum(real_bandit.user_vectors * theirs._u_hat, axis=0))
    for ours, their_vectors in (
        (real_bandit.user_vectors, theirs._u_hat),
        (real_bandit.movie_vectors, theirs._v_hat),
    ):
        np.testing.assert_allclose(ours * signs, their_vectors, atol=1e-6)

    # Through the public API: TF-Agents samples users with `np.random` and
    # candidates with `random`.
    np.random.seed(7)
    random.seed(7)
    observation = theirs.reset().observation
    user_ids = theirs._current_user_indices + 1
    candidate_ids = theirs._current_movie_indices + 1
    np.testing.assert_allclose(
        observation["global"],
        pa.global_features(real_bandit, user_ids) * signs,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        observation["per_arm"],
        pa.arm_features(real_bandit, candidate_ids) * signs,
        atol=1e-6,
    )
    actions = np.arange(batch_size, dtype=np.int32) * 5
    reward = theirs.step(actions).reward
    chosen_ids = pa.chosen_movie_ids(candidate_ids, actions)
    np.testing.assert_allclose(
        reward, pa.expected_rewards(real_bandit, user_ids, chosen_ids), **close
    )
    np.testing.assert_allclose(
        pa.observed_rewards(
            real_bandit, user_ids, chosen_ids, np.random.default_rng(0), noise_sd=0.0
        ),
        reward,
        **close,
    )
    positions, best = pa.oracle(real_bandit, user_ids, candidate_ids)
    np.testing.assert_array_equal(theirs.compute_optimal_action(), positions)
    np.testing.assert_allclose(theirs.compute_optimal_reward(), best, **close)


def test_expected_rewards_by_hand():
    bandit = _tiny_bandit()
    np.testing.assert_array_equal(
        pa.expected_rewards(bandit, _USERS, _CANDIDATES),
        [[2.0, 0.0, 1.0], [-1.0, 0.5, 1.0]],
    )
    # One movie per row gives one reward per row.
    np.testing.assert_array_equal(
        pa.expected_rewards(bandit, _USERS, np.array([3, 4])), [1.0, -1.0]
    )


def test_oracle_regret_and_policy_values_by_hand():
    bandit = _tiny_bandit()
    positions, best = pa.oracle(bandit, _USERS, _CANDIDATES)
    np.testing.assert_array_equal(positions, [0, 2])
    np.testing.assert_array_equal(best, [2.0, 1.0])
    assert pa.oracle_value(bandit, _USERS, _CANDIDATES) == pytest.approx(1.5)
    # Uniform: mean of (2 + 0 + 1) / 3 and (-1 + 0.5 + 1) / 3.
    assert pa.uniform_random_value(bandit, _USERS, _CANDIDATES) == pytest.approx(
        (1.0 + 0.5 / 3) / 2
    )
    chosen = np.array([1, 0])
    np.testing.assert_array_equal(pa.chosen_movie_ids(_CANDIDATES, chosen), [2, 4])
    np.testing.assert_array_equal(
        pa.regret(bandit, _USERS, _CANDIDATES, chosen), [2.0, 2.0]
    )
    assert pa.policy_value(bandit, _USERS, _CANDIDATES, chosen) == pytest.approx(-0.5)
    np.testing.assert_array_equal(
        pa.regret(bandit, _USERS, _CANDIDATES, positions), [0.0, 0.0]
    )


def test_oracle_ties_go_to_the_lowest_position():
    bandit = _tiny_bandit()
    positions, _ = pa.oracle(bandit, np.array([1]), np.array([[2, 4, 1, 1]]))
    np.testing.assert_array_equal(positions, [2])


def test_build_full_rank_reconstructs_the_matrix_by_id():
    matrix = np.array(
        [
            [5.0, 0.0, 3.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 4.0, 2.0],
            [1.0, 2.0, 0.0, 0.0, 5.0],
        ]
    )
    bandit = pa.build_per_arm_bandit(matrix, rank_k=3)
    assert (bandit.num_users, bandit.num_movies, bandit.rank_k) == (3, 5, 3)
    assert (bandit.global_dim, bandit.arm_dim) == (3, 3)
    every_movie = np.tile(np.arange(1, 6), (3, 1))
    rewards = pa.expected_rewards(bandit, np.array([1, 2, 3]), every_movie)
    np.testing.assert_allclose(rewards, matrix, atol=1e-12)
    # User id 2, movie id 4 is matrix[1, 3].
    one = pa.expected_rewards(bandit, np.array([2]), np.array([4]))
    assert one[0] == pytest.approx(4.0)


def test_rank_one_is_the_leading_singular_triplet():
    matrix = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0]])
    bandit = pa.build_per_arm_bandit(matrix, rank_k=1)
    u, s, vh = np.linalg.svd(matrix, full_matrices=False)
    rewards = pa.expected_rewards(bandit, np.array([1, 2, 3]), np.tile([1, 2], (3, 1)))
    np.testing.assert_allclose(rewards, s[0] * np.outer(u[:, 0], vh[0]))
    features = pa.global_features(bandit, np.array([1, 2, 3]))
    np.testing.assert_allclose(np.abs(features), np.abs(u[:, :1]))


def test_noise_free_observations_equal_expected_rewards():
    bandit = _random_bandit(30, 40, rank_k=5)
    users, candidates = pa.sample_round(bandit, 500, 10, np.random.default_rng(1))
    expected = pa.expected_rewards(bandit, users, candidates)
    observed = pa.observed_rewards(
        bandit, users, candidates, np.random.default_rng(2), noise_sd=0.0
    )
    np.testing.assert_array_equal(observed, expected)


def test_gaussian_noise_has_zero_mean_and_the_given_sd():
    bandit = _random_bandit(30, 40, rank_k=5)
    users, candidates = pa.sample_round(bandit, 10_000, 10, np.random.default_rng(1))
    expected = pa.expected_rewards(bandit, users, candidates)
    residual = (
        pa.observed_rewards(bandit, users, candidates, np.random.default_rng(3), 1.0)
        - expected
    )
    # 100,000 residuals: the standard errors of mean and sd are about 0.003
    # and 0.002, so these bounds are over 7 of them.
    assert abs(residual.mean()) < 0.025
    assert abs(residual.std() - 1.0) < 0.02
    # The same seed draws the same noise at any sd.
    doubled = (
        pa.observed_rewards(bandit, users, candidates, np.random.default_rng(3), 2.0)
        - expected
    )
    np.testing.assert_allclose(doubled, 2.0 * residual, atol=1e-12)


def test_candidates_are_distinct_and_uniform():
    bandit = _random_bandit(6, 10, rank_k=2)
    rounds = 20_000
    users, candidates = pa.sample_round(bandit, rounds, 3, np.random.default_rng(4))
    assert users.shape == (rounds,) and candidates.shape == (rounds, 3)
    assert users.dtype == np.int64 and candidates.dtype == np.int64
    ordered = np.sort(candidates, axis=1)
    assert np.all(np.diff(ordered, axis=1) > 0)
    assert candidates.min() == 1 and candidates.max() == 10
    # Each movie is in a row with probability 3/10 and at each position with
    # probability 1/10; each user is drawn with probability 1/6. The standard
    # errors are at most 0.0033, so these bounds are over 5 of them.
    in_row = np.bincount(candidates.ravel(), minlength=11)[1:] / rounds
    np.testing.assert_allclose(in_row, 0.3, atol=0.02)
    for position in range(3):
        at_position = np.bincount(candidates[:, position], minlength=11)[1:] / rounds
        np.testing.assert_allclose(at_position, 0.1, atol=0.015)
    per_user = np.bincount(users, minlength=7)[1:] / rounds
    np.testing.assert_allclose(per_user, 1 / 6, atol=0.015)

    again = pa.sample_round(bandit, rounds, 3, np.random.default_rng(4))
    np.testing.assert_array_equal(again.user_ids, users)
    np.testing.assert_array_equal(again.candidate_ids, candidates)


def test_one_candidate_and_the_whole_catalogue():
    bandit = _random_bandit(6, 10, rank_k=2)
    rng = np.random.default_rng(5)
    assert pa.sample_round(bandit, 4, 1, rng).candidate_ids.shape == (4, 1)
    whole = pa.sample_round(bandit, 50, 10, rng).candidate_ids
    np.testing.assert_array_equal(
        np.sort(whole, axis=1), np.tile(np.arange(1, 11), (50, 1))
    )


def test_real_catalogue_rounds(real_bandit):
    rng = np.random.default_rng(6)
    whole = pa.sample_round(real_bandit, 20, md.NUM_ITEMS, rng).candidate_ids
    np.testing.assert_array_equal(
        np.sort(whole, axis=1), np.tile(np.arange(1, md.NUM_ITEMS + 1), (20, 1))
    )
    users, candidates = pa.sample_round(real_bandit, 2_000, 50, rng)
    rewards = pa.expected_rewards(real_bandit, users, candidates)
    positions, best = pa.oracle(real_bandit, users, candidates)
    assert np.all(best[:, None] >= rewards)
    np.testing.assert_array_equal(
        pa.regret(real_bandit, users, candidates, positions), 0.0
    )
    random_choice = rng.integers(0, 50, size=users.shape[0])
    assert np.all(pa.regret(real_bandit, users, candidates, random_choice) >= 0.0)
    oracle = pa.oracle_value(real_bandit, users, candidates)
    assert pa.policy_value(real_bandit, users, candidates, positions) == oracle
    assert pa.uniform_random_value(real_bandit, users, candidates) < oracle


def _real_side_data() -> tuple:
    data_dir = _real_data_dir()
    for name in (md.ITEMS_FILE, md.USERS_FILE):
        if not (data_dir / name).is_file():
            pytest.skip(f"MovieLens 100K {name} not found in {data_dir}.")
    return md.load_users(data_dir), md.load_items(data_dir)


def test_feature_flags_widen_features_not_rewards(real_matrix, real_bandit):
    users, items = _real_side_data()
    with_users = pa.build_per_arm_bandit(real_matrix, rank_k=20, users=users)
    with_items = pa.build_per_arm_bandit(real_matrix, rank_k=20, items=items)
    assert (real_bandit.global_dim, real_bandit.arm_dim) == (20, 20)
    assert (with_users.global_dim, with_users.arm_dim) == (20 + pa.DEMOGRAPHICS_DIM, 20)
    assert (with_items.global_dim, with_items.arm_dim) == (20, 20 + pa.METADATA_DIM)
    assert (pa.DEMOGRAPHICS_DIM, pa.METADATA_DIM) == (24, 20)

    round_ = pa.sample_round(real_bandit, 64, 50, np.random.default_rng(8))
    expected = pa.expected_rewards(real_bandit, *round_)
    for bandit in (with_users, with_items):
        np.testing.assert_array_equal(pa.expected_rewards(bandit, *round_), expected)
        globals_ = pa.global_features(bandit, round_.user_ids)
        arms = pa.arm_features(bandit, round_.candidate_ids)
        assert globals_.shape == (64, bandit.global_dim)
        assert arms.shape == (64, 50, bandit.arm_dim)
        np.testing.assert_array_equal(
            globals_[:, :20], pa.global_features(real_bandit, round_.user_ids)
        )
        np.testing.assert_array_equal(
            arms[..., :20], pa.arm_features(real_bandit, round_.candidate_ids)
        )


def test_real_demographics_and_metadata(real_matrix):
    users, items = _real_side_data()
    bandit = pa.build_per_arm_bandit(real_matrix, rank_k=20, users=users, items=items)
    # User 1 is 24, male, a technician.
    demographics = pa.global_features(bandit, np.array([1]))[0, 20:]
    assert demographics[0] == pytest.approx(0.24)
    np.testing.assert_array_equal(demographics[1:3], [0.0, 1.0])
    np.testing.assert_array_equal(
        np.flatnonzero(demographics[3:]), [md.OCCUPATIONS.index("technician")]
    )
    # Movie 1 is Toy Story (1995): Animation, Children's, Comedy.
    toy_story = pa.arm_features(bandit, np.array([1]))[0, 20:]
    genres = [md.GENRES[i] for i in np.flatnonzero(toy_story[:-1])]
    assert genres == ["Animation", "Children's", "Comedy"]
    assert toy_story[-1] == pytest.approx(0.95)
    # Movie 267 has no release date: it gets the mean of the known years.
    years = bandit.movie_metadata[:, -1]
    assert years[266] == pytest.approx(np.delete(years, 266).mean())


def test_builder_places_side_features_by_id():
    users = md.Users(
        user_id=np.array([2, 1]),
        age=np.array([50, 20]),
        gender=np.array(["F", "M"]),
        occupation=np.array(["writer", "artist"]),
    )
    items = md.Items(
        item_id=np.array([3, 1, 2]),
        release_year=np.array([1990, md.MISSING_YEAR, 1950]),
        genres=np.eye(3, len(md.GENRES), dtype=np.int64),
    )
    matrix = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    bandit = pa.build_per_arm_bandit(matrix, rank_k=2, users=users, items=items)
    np.testing.assert_allclose(bandit.user_demographics[:, 0], [0.2, 0.5])
    np.testing.assert_array_equal(bandit.user_demographics[:, 1:3], [[0, 1], [1, 0]])
    # Movie 1's unknown year is the mean of 1950 and 1990.
    np.testing.assert_allclose(bandit.movie_metadata[:, -1], [0.7, 0.5, 0.9])
    genres = np.argmax(bandit.movie_metadata[:, :-1], axis=1)
    np.testing.assert_array_equal(genres, [1, 2, 0])


def _users(user_ids: list, genders: list, occupations: list) -> md.Users:
    return md.Users(
        user_id=np.array(user_ids),
        age=np.full(len(user_ids), 30),
        gender=np.array(genders),
        occupation=np.array(occupations),
    )


def _items(item_ids: list, years: list, num_genres: int = len(md.GENRES)) -> md.Items:
    return md.Items(
        item_id=np.array(item_ids),
        release_year=np.array(years),
        genres=np.zeros((len(item_ids), num_genres), dtype=np.int64),
    )


@pytest.mark.parametrize(
    "users, items, match",
    [
        (_users([1, 1], ["F", "M"], ["writer", "artist"]), None, "users must list"),
        (_users([1, 2], ["F", "X"], ["writer", "artist"]), None, "users.gender"),
        (_users([1, 2], ["F", "M"], ["writer", "pilot"]), None, "users.occupation"),
        (None, _items([1, 2], [1990, 1991]), r"items must list each id 1\.\.3"),
        (None, _items([1, 2, 3], [md.MISSING_YEAR] * 3), "no known year"),
        (None, _items([1, 2, 3], [1990] * 3, 4), "items.genres must have shape"),
    ],
)
def test_builder_rejects_inconsistent_side_data(users, items, match):
    matrix = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=match):
        pa.build_per_arm_bandit(matrix, rank_k=1, users=users, items=items)


@pytest.mark.parametrize(
    "rank_k, match",
    [
        (0, r"rank_k must be in 1\.\.2, got 0"),
        (3, r"rank_k must be in 1\.\.2, got 3"),
        (2.0, "rank_k must be an integer"),
        (True, "rank_k must be an integer"),
    ],
)
def test_build_rejects_bad_rank(rank_k, match):
    with pytest.raises(ValueError, match=match):
        pa.build_per_arm_bandit(np.ones((2, 3)), rank_k=rank_k)


def test_build_rejects_bad_matrices():
    with pytest.raises(ValueError, match="ratings_matrix must be a non-empty 2-D"):
        pa.build_per_arm_bandit(np.ones(4), rank_k=1)
    with pytest.raises(ValueError, match="ratings_matrix contains NaN"):
        pa.build_per_arm_bandit(np.full((2, 2), np.nan), rank_k=1)


def test_bandit_is_immutable_and_checks_shapes():
    bandit = _tiny_bandit()
    with pytest.raises(ValueError):
        bandit.movie_vectors[0, 0] = 9.0
    with pytest.raises(AttributeError):
        bandit.movie_vectors = _MOVIE_VECTORS
    with pytest.raises(ValueError, match=r"movie_vectors must have shape \[count, 2\]"):
        pa.MovieLensPerArmBandit(
            _USER_VECTORS, _SINGULAR_VALUES, np.ones((4, 3)), np.zeros((2, 0)),
            np.zeros((4, 0)),
        )
    with pytest.raises(ValueError, match=r"user_demographics must have shape \[2,"):
        pa.MovieLensPerArmBandit(
            _USER_VECTORS, _SINGULAR_VALUES, _MOVIE_VECTORS, np.zeros((3, 1)),
            np.zeros((4, 0)),
        )


@pytest.mark.parametrize(
    "batch_size, num_candidates, rng, match",
    [
        (0, 2, np.random.default_rng(0), "batch_size must be >= 1, got 0"),
        (1.5, 2, np.random.default_rng(0), "batch_size must be an integer"),
        (3, 0, np.random.default_rng(0), r"num_candidates must be in 1\.\.4, got 0"),
        (3, 5, np.random.default_rng(0), r"num_candidates must be in 1\.\.4, got 5"),
        (3, 2, np.random.RandomState(0), "rng must be a numpy.random.Generator"),
    ],
)
def test_sample_round_rejects_bad_arguments(batch_size, num_candidates, rng, match):
    with pytest.raises(ValueError, match=match):
        pa.sample_round(_tiny_bandit(), batch_size, num_candidates, rng)


@pytest.mark.parametrize(
    "users, movies, match",
    [
        ([0, 1], [[1], [2]], r"user_ids must be in 1\.\.2, got 0"),
        ([1, 3], [[1], [2]], r"user_ids must be in 1\.\.2, got 3"),
        ([1, 2], [[1], [5]], r"movie_ids must be in 1\.\.4, got 5"),
        ([1, 2], [[0], [2]], r"movie_ids must be in 1\.\.4, got 0"),
        ([1.0, 2.0], [[1], [2]], "user_ids must be integer ids"),
        ([1, 2], [[True], [False]], "movie_ids must be integer ids"),
        ([1, 2], [[1, 2]], r"movie_ids must have shape \[N\] or \[N, C\] with N = 2"),
        ([[1, 2]], [[1], [2]], r"user_ids must have shape \[N\]"),
    ],
)
def test_rewards_reject_bad_ids(users, movies, match):
    with pytest.raises(ValueError, match=match):
        pa.expected_rewards(_tiny_bandit(), np.array(users), np.array(movies))


@pytest.mark.parametrize(
    "function, ids, match",
    [
        (pa.global_features, [3], r"user_ids must be in 1\.\.2, got 3"),
        (pa.arm_features, [[1, 0]], r"movie_ids must be in 1\.\.4, got 0"),
    ],
)
def test_features_reject_bad_ids(function, ids, match):
    with pytest.raises(ValueError, match=match):
        function(_tiny_bandit(), np.array(ids))


@pytest.mark.parametrize(
    "noise_sd, rng, match",
    [
        (-1.0, np.random.default_rng(0), "noise_sd must be finite and >= 0, got -1.0"),
        (np.nan, np.random.default_rng(0), "noise_sd must be finite and >= 0"),
        ("1", np.random.default_rng(0), "noise_sd must be a number"),
        (1.0, None, "rng must be a numpy.random.Generator"),
    ],
)
def test_observed_rewards_reject_bad_arguments(noise_sd, rng, match):
    with pytest.raises(ValueError, match=match):
        pa.observed_rewards(_tiny_bandit(), _USERS, _CANDIDATES, rng, noise_sd)


@pytest.mark.parametrize(
    "chosen, match",
    [
        ([0, 3], r"chosen must be in 0\.\.2, got 3"),
        ([-1, 0], r"chosen must be in 0\.\.2, got -1"),
        ([0.0, 1.0], "chosen must be integers"),
        ([0, 1, 2], r"chosen must have shape \[2\]"),
    ],
)
def test_policy_functions_reject_bad_choices(chosen, match):
    bandit = _tiny_bandit()
    for function in (pa.regret, pa.policy_value):
        with pytest.raises(ValueError, match=match):
            function(bandit, _USERS, _CANDIDATES, np.array(chosen))


@pytest.mark.parametrize(
    "function", [pa.oracle, pa.oracle_value, pa.uniform_random_value]
)
def test_candidate_functions_need_a_2d_candidate_array(function):
    with pytest.raises(ValueError, match=r"candidate_ids must have shape \[N, C\]"):
        function(_tiny_bandit(), _USERS, np.array([1, 2]))


def test_load_per_arm_bandit_reads_only_what_the_flags_ask_for(tmp_path):
    (tmp_path / md.RATINGS_FILE).write_text("1\t2\t5\t1\n2\t1\t3\t1\n")
    plain = pa.load_per_arm_bandit(tmp_path, rank_k=1)
    assert (plain.global_dim, plain.arm_dim) == (1, 1)
    with pytest.raises(md.MovieLensDataError, match="u.user"):
        pa.load_per_arm_bandit(tmp_path, rank_k=1, user_demographics=True)
    with pytest.raises(md.MovieLensDataError, match="u.item"):
        pa.load_per_arm_bandit(tmp_path, rank_k=1, movie_metadata=True)


def test_load_per_arm_bandit_from_real_data(real_bandit):
    _real_side_data()
    bandit = pa.load_per_arm_bandit(
        _real_data_dir(), rank_k=20, user_demographics=True, movie_metadata=True
    )
    assert (bandit.num_users, bandit.num_movies) == (md.NUM_USERS, md.NUM_ITEMS)
    assert (bandit.global_dim, bandit.arm_dim) == (44, 40)
    np.testing.assert_array_equal(bandit.singular_values, real_bandit.singular_values)
