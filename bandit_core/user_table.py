"""The users a per-arm policy version knows by id, with the features it was trained on.

A per-arm request may name its user by `user_id` alone. The server then needs
the user's global features, and they must be the ones the policy learned
from, so, like the item catalogue, the table travels inside the version
directory: the trainer writes each user's features from the latest training
row that named the user. A user first seen after training has no row and
must be sent with features.
"""

import dataclasses
import io
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from bandit_core.item_catalogue import sorted_positions

# The table's subdirectory in a per-arm policy's version directory.
USER_TABLE_DIR = "user_table"
USERS_FILE = "users.npz"


class UnknownUsersError(KeyError):
    """User ids the table does not hold; `ids` lists them."""

    def __init__(self, ids: Sequence[int]) -> None:
        super().__init__(f"unknown user ids {list(ids)}")
        self.ids = list(ids)

    def __str__(self) -> str:
        return self.args[0]


@dataclasses.dataclass(frozen=True, eq=False)
class UserTable:
    """User ids and their global features, sorted by id.

    Attributes:
      user_ids: [U] int64, distinct, ascending.
      features: [U, dg] float32, row u describing `user_ids[u]`.
    """

    user_ids: np.ndarray
    features: np.ndarray

    def __post_init__(self) -> None:
        ids = np.array(self.user_ids, dtype=np.int64)
        features = np.array(self.features, dtype=np.float32)
        if ids.ndim != 1 or features.ndim != 2 or len(features) != len(ids):
            raise ValueError(
                f"expected user_ids [U] and features [U, dg]; got {ids.shape} and {features.shape}"
            )
        if len(np.unique(ids)) != len(ids):
            raise ValueError("user ids occur more than once")
        if not np.all(np.isfinite(features)):
            raise ValueError("user features must be finite")
        order = np.argsort(ids)
        for name, array in (("user_ids", ids[order]), ("features", features[order])):
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.user_ids)

    def features_of(self, ids: Sequence[int]) -> np.ndarray:
        """[n] user ids -> [n, dg] their features; raises UnknownUsersError listing unknown ids."""
        ids = np.asarray(ids, dtype=np.int64)
        positions, known = sorted_positions(self.user_ids, ids)
        if not np.all(known):
            raise UnknownUsersError(ids[~known].tolist())
        return self.features[positions]

    def save(self, directory: str) -> None:
        """Writes `users.npz` (ids and features)."""
        tf.io.gfile.makedirs(directory)
        buffer = io.BytesIO()
        np.savez(buffer, user_ids=self.user_ids, features=self.features)
        with tf.io.gfile.GFile(os.path.join(directory, USERS_FILE), "wb") as f:
            f.write(buffer.getvalue())

    @classmethod
    def load(cls, directory: str) -> Optional["UserTable"]:
        """What `save` wrote, or None for a version exported without a user table."""
        path = os.path.join(directory, USERS_FILE)
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path, "rb") as f:
            arrays = np.load(io.BytesIO(f.read()), allow_pickle=False)
            return cls(arrays["user_ids"], arrays["features"])


@dataclasses.dataclass(frozen=True)
class LatestUserRows:
    """Each named user's latest row so far: the trainer's additive summary of a split.

    Adding two keeps, per user, the row with the later event time, so Beam
    may sum batches' summaries in any order; the summary holds one row per
    user however many rows the split has.

    Attributes:
      user_ids: [U] int64, distinct.
      event_times: [U] int64 microseconds of each user's latest row.
      features: [U, dg] that row's global features.
    """

    user_ids: np.ndarray
    event_times: np.ndarray
    features: np.ndarray

    def __add__(self, other: "LatestUserRows") -> "LatestUserRows":
        return latest_user_rows(
            np.concatenate([self.user_ids, other.user_ids]),
            np.concatenate([self.event_times, other.event_times]),
            np.concatenate([self.features, other.features]),
        )

    def table(self) -> UserTable:
        return UserTable(self.user_ids, self.features)


def latest_user_rows(
    user_ids: np.ndarray, event_times: np.ndarray, features: np.ndarray
) -> LatestUserRows:
    """Each named user's latest row; rows without a user (id 0) are skipped.

    Of rows with equal times, the later one in input order wins.
    """
    ids = np.asarray(user_ids, dtype=np.int64)
    times = np.asarray(event_times, dtype=np.int64)
    features = np.asarray(features, dtype=np.float32)
    named = np.flatnonzero(ids > 0)
    order = named[np.lexsort((times[named], ids[named]))]
    last = np.r_[ids[order][1:] != ids[order][:-1], True] if len(order) else np.empty(0, bool)
    chosen = order[last]
    return LatestUserRows(ids[chosen], times[chosen], features[chosen].reshape(-1, features.shape[1]))
