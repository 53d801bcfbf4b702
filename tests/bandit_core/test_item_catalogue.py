"""The item catalogue: lookup by id, unknown ids named, additions, and files that round-trip."""

import numpy as np
import pytest

from bandit_core.item_catalogue import ItemCatalogue, UnknownItemsError


def _catalogue() -> ItemCatalogue:
    return ItemCatalogue([30, 10, 20], np.arange(6.0).reshape(3, 2), "genres-v1")


def test_features_are_looked_up_by_id_in_the_order_asked():
    np.testing.assert_array_equal(
        _catalogue().features_of([20, 30, 20]), [[4.0, 5.0], [0.0, 1.0], [4.0, 5.0]]
    )


def test_unknown_ids_are_named():
    with pytest.raises(UnknownItemsError, match=r"unknown movie ids \[5, 99\]") as error:
        _catalogue().features_of([10, 5, 99])
    assert error.value.ids == [5, 99]


def test_with_items_adds_movies_and_refuses_existing_ids():
    extended = _catalogue().with_items([40], [[7.0, 8.0]])
    assert len(extended) == 4 and extended.feature_version == "genres-v1"
    np.testing.assert_array_equal(extended.features_of([40, 10]), [[7.0, 8.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match=r"movie ids \[10\] occur more than once"):
        extended.with_items([10], [[0.0, 0.0]])


@pytest.mark.parametrize(
    "ids, features, message",
    [
        ([1, 2], np.zeros((3, 2)), "expected movie_ids"),
        ([1], [[np.nan, 0.0]], "finite"),
    ],
)
def test_bad_catalogues_are_refused(ids, features, message):
    with pytest.raises(ValueError, match=message):
        ItemCatalogue(ids, features, "v")


def test_save_and_load_round_trip(tmp_path):
    original = _catalogue()
    original.save(str(tmp_path / "items"))
    loaded = ItemCatalogue.load(str(tmp_path / "items"))
    np.testing.assert_array_equal(loaded.movie_ids, original.movie_ids)
    np.testing.assert_array_equal(loaded.features, original.features)
    assert loaded.features.dtype == np.float32 and loaded.feature_version == "genres-v1"
    with pytest.raises(FileNotFoundError, match="items.npz"):
        ItemCatalogue.load(str(tmp_path / "nothing"))
