"""The movies a per-arm policy can recommend, with the features it scores them by.

A per-arm policy scores any movie from its features, so the catalogue travels
with the policy version rather than with the model: adding a movie to a
version's catalogue makes it recommendable without retraining. Files go
through `tf.io.gfile`, so a catalogue may live on gs:// as well as locally.
"""

import dataclasses
import io
import json
import os
from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

# The catalogue's subdirectory in a per-arm policy's version directory.
CATALOGUE_DIR = "item_catalogue"
ITEMS_FILE = "items.npz"
VERSION_FILE = "items.json"


class UnknownItemsError(KeyError):
    """Ids the catalogue does not hold; `ids` lists them."""

    def __init__(self, ids: Sequence[int]) -> None:
        super().__init__(f"unknown movie ids {list(ids)}")
        self.ids = list(ids)

    def __str__(self) -> str:
        return self.args[0]


def sorted_positions(sorted_ids: np.ndarray, ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(position of each id in ascending `sorted_ids`, whether it is there at all)."""
    if not len(sorted_ids):
        return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
    positions = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return positions, sorted_ids[positions] == ids


@dataclasses.dataclass(frozen=True, eq=False)
class ItemCatalogue:
    """Movie ids and their features, read-only once built.

    Attributes:
      movie_ids: [M] int64, distinct.
      features: [M, da] float32, row m describing `movie_ids[m]`.
      feature_version: names the feature map that produced `features`; a
        policy must be served with the features it was trained on.
    """

    movie_ids: np.ndarray
    features: np.ndarray
    feature_version: str

    def __post_init__(self) -> None:
        ids = np.array(self.movie_ids, dtype=np.int64)
        features = np.array(self.features, dtype=np.float32)
        if ids.ndim != 1 or features.ndim != 2 or len(features) != len(ids):
            raise ValueError(
                f"expected movie_ids [M] and features [M, da]; got {ids.shape} and {features.shape}"
            )
        if len(np.unique(ids)) != len(ids):
            values, counts = np.unique(ids, return_counts=True)
            raise ValueError(f"movie ids {values[counts > 1].tolist()} occur more than once")
        if not np.all(np.isfinite(features)):
            raise ValueError("features must be finite")
        order = np.argsort(ids)
        for name, array in (("movie_ids", ids), ("features", features), ("_order", order)):
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.movie_ids)

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]

    def features_of(self, ids: Sequence[int]) -> np.ndarray:
        """[n] movie ids -> [n, da] their features.

        Raises:
          UnknownItemsError: some ids are not in the catalogue; it lists them.
        """
        ids = np.asarray(ids, dtype=np.int64)
        positions, known = sorted_positions(self.movie_ids[self._order], ids)
        if not np.all(known):
            raise UnknownItemsError(ids[~known].tolist())
        return self.features[self._order[positions]]

    def with_items(self, movie_ids: Sequence[int], features: np.ndarray) -> "ItemCatalogue":
        """A new catalogue with these movies added; raises ValueError if an id exists already."""
        return ItemCatalogue(
            np.concatenate([self.movie_ids, np.asarray(movie_ids, dtype=np.int64)]),
            np.concatenate([self.features, np.asarray(features, dtype=np.float32)]),
            self.feature_version,
        )

    def save(self, directory: str) -> None:
        """Writes `items.npz` (ids and features) and `items.json` (the feature version)."""
        tf.io.gfile.makedirs(directory)
        buffer = io.BytesIO()
        np.savez(buffer, movie_ids=self.movie_ids, features=self.features)
        with tf.io.gfile.GFile(os.path.join(directory, ITEMS_FILE), "wb") as f:
            f.write(buffer.getvalue())
        with tf.io.gfile.GFile(os.path.join(directory, VERSION_FILE), "w") as f:
            json.dump({"feature_version": self.feature_version}, f)

    @classmethod
    def load(cls, directory: str) -> "ItemCatalogue":
        """Reads what `save` wrote; raises FileNotFoundError naming a missing file."""
        paths = [os.path.join(directory, name) for name in (ITEMS_FILE, VERSION_FILE)]
        for path in paths:
            if not tf.io.gfile.exists(path):
                raise FileNotFoundError(f"{path} is missing: no item catalogue in {directory}")
        with tf.io.gfile.GFile(paths[0], "rb") as f:
            arrays = np.load(io.BytesIO(f.read()), allow_pickle=False)
            movie_ids, features = arrays["movie_ids"], arrays["features"]
        with tf.io.gfile.GFile(paths[1]) as f:
            feature_version = json.load(f)["feature_version"]
        return cls(movie_ids, features, feature_version)
