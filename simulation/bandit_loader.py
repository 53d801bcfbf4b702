"""One call from a data directory to the MovieLens bandit problem."""

import pathlib
from typing import Union

from simulation import movielens_data, movielens_environment


def load_movielens_bandit(
    data_dir: Union[str, pathlib.Path], rank_k: int, num_actions: int
) -> movielens_environment.MovieLensBandit:
    """Finds (or downloads) MovieLens 100K and builds the bandit from it.

    An empty `data_dir` means the default location (see
    `movielens_data.default_data_dir`).
    """
    ratings = movielens_data.load_ratings(movielens_data.find_movielens(data_dir))
    return movielens_environment.build_movielens_bandit(
        movielens_data.ratings_matrix(ratings), rank_k=rank_k, num_actions=num_actions
    )
