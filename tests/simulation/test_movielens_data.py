"""Tests for simulation.movielens_data.

Error paths use small files written into tmp_path; only the comparison with
TF-Agents' loader reads the real MovieLens data, and skips when it is absent.
"""

import functools
import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from simulation import movielens_data as md

_ROWS = "1\t2\t5\t881250949\n3\t1\t1\t891717742\n2\t4\t3\t878887116\n"


def _write_ratings(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / md.RATINGS_FILE).write_text(text)
    return directory


def _zip_bytes(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, content in files.items():
            bundle.writestr(name, content)
    return buffer.getvalue()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """Keeps request logs out of the test output."""


def _real_data_dir() -> Path:
    data_dir = md.default_data_dir()
    if not (data_dir / md.RATINGS_FILE).is_file():
        pytest.skip(
            f"MovieLens 100K not found at {data_dir}; set {md.DATA_DIR_ENV_VAR} "
            f"to a directory containing u.data to run this test."
        )
    return data_dir


def test_load_ratings_parses_columns(tmp_path):
    ratings = md.load_ratings(_write_ratings(tmp_path, _ROWS), num_users=3, num_items=4)
    assert len(ratings) == 3
    np.testing.assert_array_equal(ratings.user_id, [1, 3, 2])
    np.testing.assert_array_equal(ratings.item_id, [2, 1, 4])
    np.testing.assert_array_equal(ratings.rating, [5, 1, 3])
    np.testing.assert_array_equal(ratings.timestamp, [881250949, 891717742, 878887116])
    assert ratings.user_id.dtype == np.int64


def test_load_ratings_accepts_crlf_and_no_final_newline(tmp_path):
    text = _ROWS.replace("\n", "\r\n").rstrip("\r\n")
    ratings = md.load_ratings(_write_ratings(tmp_path, text), num_users=3, num_items=4)
    assert len(ratings) == 3


def test_ratings_matrix_places_ratings():
    ratings = md.Ratings(
        user_id=np.array([1, 3, 2]),
        item_id=np.array([2, 1, 4]),
        rating=np.array([5, 1, 3]),
        timestamp=np.zeros(3, dtype=np.int64),
    )
    expected = np.array([[0, 5, 0, 0], [0, 0, 0, 3], [1, 0, 0, 0]], dtype=float)
    np.testing.assert_array_equal(md.ratings_matrix(ratings, 3, 4), expected)


def test_ratings_matrix_rejects_duplicates_and_out_of_range():
    ones = np.ones(2, dtype=np.int64)
    duplicate = md.Ratings(ones, ones, ones, ones)
    with pytest.raises(ValueError, match="duplicate"):
        md.ratings_matrix(duplicate, 3, 4)
    outside = md.Ratings(np.array([1, 4]), np.array([1, 1]), ones, ones)
    with pytest.raises(ValueError, match="outside"):
        md.ratings_matrix(outside, 3, 4)


def test_missing_directory_names_path_and_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(md.MovieLensDataError) as info:
        md.load_ratings(missing)
    message = str(info.value)
    assert str(missing) in message
    assert md.DATA_DIR_ENV_VAR in message and "--movielens-dir" in message


def test_missing_file_names_file_and_fix(tmp_path):
    with pytest.raises(md.MovieLensDataError) as info:
        md.load_ratings(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "u.data") in message
    assert md.DATA_DIR_ENV_VAR in message and "--movielens-dir" in message


def test_empty_file(tmp_path):
    with pytest.raises(md.MovieLensDataError, match="empty"):
        md.load_ratings(_write_ratings(tmp_path, ""))


@pytest.mark.parametrize(
    "bad_line, line_number, problem",
    [
        ("1\t2\t5", 2, "expected 4 fields"),
        ("1\t2\t5\t9\t9", 2, "expected 4 fields"),
        ("", 2, "expected 4 fields"),
        ("1\tx\t5\t881250949", 2, "non-negative integers"),
        ("1\t2\t4.5\t881250949", 2, "non-negative integers"),
        ("1\t2\t-1\t881250949", 2, "non-negative integers"),
        ("1\t2\t6\t881250949", 2, "rating must be in 1..5"),
        ("1\t2\t0\t881250949", 2, "rating must be in 1..5"),
        ("0\t2\t3\t881250949", 2, "user id must be in 1..3"),
        ("4\t2\t3\t881250949", 2, "user id must be in 1..3"),
        ("1\t5\t3\t881250949", 2, "item id must be in 1..4"),
    ],
)
def test_malformed_line_reports_file_line_and_text(
    tmp_path, bad_line, line_number, problem
):
    lines = _ROWS.splitlines()
    lines.insert(line_number - 1, bad_line)
    _write_ratings(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(md.MovieLensDataError) as info:
        md.load_ratings(tmp_path, num_users=3, num_items=4)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'u.data'}:{line_number}: ")
    assert problem in message
    assert repr(bad_line) in message


def test_first_bad_line_is_reported(tmp_path):
    text = _ROWS + "1\t2\t9\t1\n" + "1\t2\n"
    with pytest.raises(md.MovieLensDataError, match=r"u\.data:5: expected 4 fields"):
        md.load_ratings(_write_ratings(tmp_path, text), num_users=3, num_items=4)


def test_non_ascii_line_is_reported(tmp_path):
    (tmp_path / "u.data").write_bytes(_ROWS.encode() + "1\t2\t\u00e9\t3\n".encode())
    with pytest.raises(md.MovieLensDataError, match=r"u\.data:4: non-ASCII"):
        md.load_ratings(tmp_path, num_users=3, num_items=4)


def test_default_data_dir_prefers_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(md.DATA_DIR_ENV_VAR, str(tmp_path))
    assert md.default_data_dir() == tmp_path


def test_default_data_dir_without_env_var(monkeypatch):
    monkeypatch.delenv(md.DATA_DIR_ENV_VAR, raising=False)
    repo = Path(md.__file__).resolve().parents[1]
    shared = repo.parent / "shared" / "data" / "ml-100k"
    expected = shared if (shared / "u.data").is_file() else repo / "data" / "ml-100k"
    assert md.default_data_dir() == expected


def test_ensure_movielens_returns_existing_dir_without_download(tmp_path):
    data_dir = _write_ratings(tmp_path / "ml-100k", _ROWS)
    url = (tmp_path / "absent.zip").as_uri()
    assert md.ensure_movielens(data_dir, url=url) == data_dir


def test_ensure_movielens_downloads_verifies_and_extracts(tmp_path):
    archive = _zip_bytes(
        {
            "ml-100k/u.data": _ROWS,
            "ml-100k/README": "fake",
            "elsewhere/ignored.txt": "not extracted",
        }
    )
    source = tmp_path / "served" / "ml-100k.zip"
    source.parent.mkdir()
    source.write_bytes(archive)
    data_dir = tmp_path / "data" / "ml-100k"

    result = md.ensure_movielens(
        data_dir, url=source.as_uri(), md5=hashlib.md5(archive).hexdigest()
    )

    assert result == data_dir
    assert (data_dir / "u.data").read_text() == _ROWS
    assert (data_dir / "README").read_text() == "fake"
    assert sorted(p.name for p in data_dir.parent.iterdir()) == ["ml-100k"]
    assert len(md.load_ratings(data_dir, num_users=3, num_items=4)) == 3


def test_ensure_movielens_checksum_mismatch_extracts_nothing(tmp_path):
    source = tmp_path / "ml-100k.zip"
    source.write_bytes(_zip_bytes({"ml-100k/u.data": _ROWS}))
    data_dir = tmp_path / "data" / "ml-100k"

    with pytest.raises(md.MovieLensDataError) as info:
        md.ensure_movielens(data_dir, url=source.as_uri(), md5="0" * 32)

    message = str(info.value)
    assert "Checksum mismatch" in message and "0" * 32 in message
    assert md.DATA_DIR_ENV_VAR in message and "--movielens-dir" in message
    assert not data_dir.exists()
    assert list(data_dir.parent.iterdir()) == []


def test_ensure_movielens_checksum_mismatch_over_http(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "ml-100k.zip").write_bytes(_zip_bytes({"ml-100k/u.data": _ROWS}))
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/ml-100k.zip"
        with pytest.raises(md.MovieLensDataError, match="Checksum mismatch"):
            md.ensure_movielens(tmp_path / "data" / "ml-100k", url=url, md5="0" * 32)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert not (tmp_path / "data" / "ml-100k").exists()


def test_ensure_movielens_default_checksum_is_published_md5(tmp_path):
    source = tmp_path / "ml-100k.zip"
    source.write_bytes(_zip_bytes({"ml-100k/u.data": _ROWS}))
    with pytest.raises(md.MovieLensDataError, match=md.MOVIELENS_MD5):
        md.ensure_movielens(tmp_path / "data" / "ml-100k", url=source.as_uri())
    assert md.MOVIELENS_MD5 == "0e33842e24a9c977be4e0107933c0723"


def test_ensure_movielens_download_failure(tmp_path):
    url = (tmp_path / "absent.zip").as_uri()
    with pytest.raises(md.MovieLensDataError) as info:
        md.ensure_movielens(tmp_path / "data" / "ml-100k", url=url)
    message = str(info.value)
    assert "Could not download" in message and url in message
    assert md.DATA_DIR_ENV_VAR in message


def test_ensure_movielens_rejects_archive_without_ratings(tmp_path):
    archive = _zip_bytes({"ml-100k/README": "no ratings"})
    source = tmp_path / "ml-100k.zip"
    source.write_bytes(archive)
    data_dir = tmp_path / "data" / "ml-100k"
    with pytest.raises(md.MovieLensDataError, match="no ml-100k/u.data"):
        md.ensure_movielens(
            data_dir, url=source.as_uri(), md5=hashlib.md5(archive).hexdigest()
        )
    assert not data_dir.exists()


def test_ensure_movielens_rejects_non_zip_with_matching_checksum(tmp_path):
    payload = b"not a zip"
    source = tmp_path / "ml-100k.zip"
    source.write_bytes(payload)
    with pytest.raises(md.MovieLensDataError, match="not a valid zip"):
        md.ensure_movielens(
            tmp_path / "data" / "ml-100k",
            url=source.as_uri(),
            md5=hashlib.md5(payload).hexdigest(),
        )


def test_real_data_matches_tf_agents_loader():
    data_dir = _real_data_dir()
    from tf_agents.bandits.environments import dataset_utilities

    ratings = md.load_ratings(data_dir)
    assert len(ratings) == 100_000
    assert np.unique(ratings.user_id).size == md.NUM_USERS
    assert np.unique(ratings.item_id).size == md.NUM_ITEMS
    expected = dataset_utilities.load_movielens_data(
        str(data_dir / "u.data"), delimiter="\t"
    )
    np.testing.assert_array_equal(md.ratings_matrix(ratings), expected)


def _item_line(item_id: str, date: str = "01-Jan-1995", genre: int = 5) -> str:
    flags = ["0"] * len(md.GENRES)
    flags[genre] = "1"
    return "|".join([item_id, "Title (1995)", date, "", "url"] + flags)


_ITEMS = "\n".join(
    [
        _item_line("1", "01-Jan-1995", genre=3),
        _item_line("3", "4-Feb-1971", genre=8),
        _item_line("2", "", genre=0),
    ]
) + "\n"
_USERS = "1|24|M|technician|85711\n3|53|F|other|94043\n2|7|M|student|T8H1N\n"


def test_load_items_parses_ids_years_and_genres(tmp_path):
    # u.item is latin-1: titles such as "Misérables" are single bytes >= 0x80.
    text = _ITEMS.replace("Title", "Mis\xe9rables", 1)
    (tmp_path / md.ITEMS_FILE).write_bytes(text.encode("latin-1"))
    items = md.load_items(tmp_path, num_items=3)
    assert len(items) == 3
    np.testing.assert_array_equal(items.item_id, [1, 3, 2])
    np.testing.assert_array_equal(items.release_year, [1995, 1971, md.MISSING_YEAR])
    assert items.genres.shape == (3, len(md.GENRES))
    np.testing.assert_array_equal(np.argmax(items.genres, axis=1), [3, 8, 0])
    np.testing.assert_array_equal(items.genres.sum(axis=1), [1, 1, 1])


def test_load_users_parses_demographics(tmp_path):
    (tmp_path / md.USERS_FILE).write_text(_USERS)
    users = md.load_users(tmp_path, num_users=3)
    assert len(users) == 3
    np.testing.assert_array_equal(users.user_id, [1, 3, 2])
    np.testing.assert_array_equal(users.age, [24, 53, 7])
    np.testing.assert_array_equal(users.gender, ["M", "F", "M"])
    np.testing.assert_array_equal(users.occupation, ["technician", "other", "student"])


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ("1|Title|01-Jan-1995||url|0|1", "expected 24 fields"),
        (_item_line("x"), "item id must be an integer"),
        (_item_line("\xb2"), "item id must be an integer"),
        (_item_line("0"), "item id must be in 1..3"),
        (_item_line("4"), "item id must be in 1..3"),
        (_item_line("1"), "duplicate item id 1"),
        (_item_line("2", "1995"), "release date must be empty or D-Mon-YYYY"),
        (_item_line("2", "01-Foo-1995"), "release date must be empty or D-Mon-YYYY"),
        (_item_line("2").replace("|1|", "|2|"), "genre flags must be 0 or 1"),
    ],
)
def test_malformed_item_line_reports_file_line_and_text(tmp_path, bad_line, problem):
    lines = _ITEMS.splitlines()
    lines[2] = bad_line
    (tmp_path / md.ITEMS_FILE).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(md.MovieLensDataError) as info:
        md.load_items(tmp_path, num_items=3)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'u.item'}:3: ")
    assert problem in message
    assert repr(bad_line) in message


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ("2|7|M|student", "expected 5 fields"),
        ("2|7|M|student|T8H1N|x", "expected 5 fields"),
        ("x|7|M|student|T8H1N", "user id must be an integer"),
        ("4|7|M|student|T8H1N", "user id must be in 1..3"),
        ("3|7|M|student|T8H1N", "duplicate user id 3"),
        ("2|seven|M|student|T8H1N", "age must be a positive integer"),
        ("2|0|M|student|T8H1N", "age must be a positive integer"),
        ("2|-7|M|student|T8H1N", "age must be a positive integer"),
        ("2|7|X|student|T8H1N", "gender must be one of ('F', 'M')"),
        ("2|7|M|astronaut|T8H1N", "occupation must be one listed in u.occupation"),
    ],
)
def test_malformed_user_line_reports_file_line_and_text(tmp_path, bad_line, problem):
    lines = _USERS.splitlines()
    lines[2] = bad_line
    (tmp_path / md.USERS_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(md.MovieLensDataError) as info:
        md.load_users(tmp_path, num_users=3)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'u.user'}:3: ")
    assert problem in message
    assert repr(bad_line) in message


@pytest.mark.parametrize(
    "load, name", [(md.load_items, "u.item"), (md.load_users, "u.user")]
)
def test_missing_or_empty_metadata_file_names_file_and_fix(tmp_path, load, name):
    with pytest.raises(md.MovieLensDataError) as info:
        load(tmp_path)
    message = str(info.value)
    assert str(tmp_path / name) in message and "not found" in message
    assert md.DATA_DIR_ENV_VAR in message and "--movielens-dir" in message
    (tmp_path / name).write_text("")
    with pytest.raises(md.MovieLensDataError, match="empty"):
        load(tmp_path)


def test_non_ascii_user_line_is_reported(tmp_path):
    (tmp_path / md.USERS_FILE).write_bytes(_USERS.encode() + b"4|30|F|\xe9crivain|1\n")
    with pytest.raises(md.MovieLensDataError, match=r"u\.user:4: non-ASCII"):
        md.load_users(tmp_path, num_users=4)


def _real_file(name: str) -> Path:
    path = md.default_data_dir() / name
    if not path.is_file():
        pytest.skip(
            f"MovieLens 100K {name} not found at {path}; set {md.DATA_DIR_ENV_VAR} "
            f"to a directory containing it to run this test."
        )
    return path


def test_real_items_and_users():
    items = md.load_items(_real_file("u.item").parent)
    all_items = np.arange(1, md.NUM_ITEMS + 1)
    np.testing.assert_array_equal(np.sort(items.item_id), all_items)
    # Only movie 267 ("unknown") has no release date.
    np.testing.assert_array_equal(
        items.item_id[items.release_year == md.MISSING_YEAR], [267]
    )
    toy_story = items.item_id == 1
    assert items.release_year[toy_story] == 1995
    genres = [md.GENRES[i] for i in np.flatnonzero(items.genres[toy_story][0])]
    assert genres == ["Animation", "Children's", "Comedy"]

    users = md.load_users(_real_file("u.user").parent)
    all_users = np.arange(1, md.NUM_USERS + 1)
    np.testing.assert_array_equal(np.sort(users.user_id), all_users)
    first = users.user_id == 1
    assert (users.age[first][0], users.gender[first][0]) == (24, "M")
    assert users.occupation[first][0] == "technician"


def test_vocabularies_match_the_data_files():
    genre_lines = _real_file("u.genre").read_text().split("\n")
    assert tuple(line.split("|")[0] for line in genre_lines if line) == md.GENRES
    occupations = _real_file("u.occupation").read_text().split()
    assert tuple(occupations) == md.OCCUPATIONS
