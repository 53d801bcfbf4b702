import numpy as np
import pytest

from bandit_core.user_table import UnknownUsersError, UserTable, latest_user_rows


def test_each_user_gets_the_features_of_their_latest_row():
    user_ids = np.array([5, 3, 5, 0, 3, 5])
    times = np.array([30, 10, 20, 99, 40, 30])
    features = np.arange(12, dtype=np.float32).reshape(6, 2)
    table = latest_user_rows(user_ids, times, features).table()
    assert table.user_ids.tolist() == [3, 5]
    # user 3: time 40 (row 4); user 5: time 30 twice, the later row (5) wins; id 0 is no user.
    assert table.features.tolist() == [features[4].tolist(), features[5].tolist()]


def test_summaries_of_parts_add_up_to_the_summary_of_the_whole():
    rng = np.random.default_rng(0)
    user_ids = rng.integers(0, 30, size=500)
    times = rng.permutation(500)
    features = rng.normal(size=(500, 3))
    whole = latest_user_rows(user_ids, times, features)
    parts = [latest_user_rows(user_ids[s], times[s], features[s]) for s in np.array_split(np.arange(500), 7)]
    for summed in (sum(parts[1:], parts[0]), sum(parts[-2::-1], parts[-1])):
        assert summed.user_ids.tolist() == whole.user_ids.tolist()
        assert np.array_equal(summed.features, whole.features)


def test_lookups_and_unknown_users(tmp_path):
    table = UserTable(np.array([9, 2]), np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert table.features_of([2, 9, 2]).tolist() == [[3.0, 4.0], [1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(UnknownUsersError) as raised:
        table.features_of([2, 4, 11])
    assert raised.value.ids == [4, 11]
    table.save(str(tmp_path))
    loaded = UserTable.load(str(tmp_path))
    assert loaded.user_ids.tolist() == [2, 9] and loaded.features_of([9]).tolist() == [[1.0, 2.0]]
    assert UserTable.load(str(tmp_path / "absent")) is None


@pytest.mark.parametrize(
    "ids, features, message",
    [
        ([1, 1], [[0.0], [1.0]], "user ids occur more than once"),
        ([1], [[np.nan]], "user features must be finite"),
        ([1, 2], [[0.0]], "expected user_ids [U] and features [U, dg]"),
    ],
)
def test_a_bad_table_is_refused(ids, features, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        UserTable(np.array(ids), np.array(features))
