"""Locating, downloading and parsing MovieLens 100K: ratings, movies and users.

The GroupLens licence forbids redistributing MovieLens, so the data never lives
in the repository: it is read from a shared directory, or downloaded into the
git-ignored `data/` folder on first use and verified against the published
checksum before anything is extracted.

Parsing is strict on purpose: a truncated or hand-edited `u.data` would
silently change the bandit's reward table, so every malformed line is reported
with its file name and 1-based line number.
"""

import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import List, Set, Tuple, Union

import numpy as np

MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# Published at https://files.grouplens.org/datasets/movielens/ml-100k.zip.md5.
# GroupLens publishes no SHA-256; MD5 here guards against truncated or
# substituted downloads, not against a deliberate collision.
MOVIELENS_MD5 = "0e33842e24a9c977be4e0107933c0723"

DATA_DIR_ENV_VAR = "MLBANDITS_MOVIELENS_DIR"
# Where a missing copy is downloaded from (a mirror, say); "off" never downloads.
DOWNLOAD_URL_ENV_VAR = "MLBANDITS_MOVIELENS_URL"
DOWNLOADS_OFF = "off"
RATINGS_FILE = "u.data"
ITEMS_FILE = "u.item"
USERS_FILE = "u.user"
ARCHIVE_ROOT = "ml-100k/"
NUM_USERS = 943
NUM_ITEMS = 1682
MIN_RATING = 1
MAX_RATING = 5
# Column order of the genre flags in `u.item`, as listed in `u.genre`.
GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# The vocabulary of `u.occupation`, in its order.
OCCUPATIONS = (
    "administrator",
    "artist",
    "doctor",
    "educator",
    "engineer",
    "entertainment",
    "executive",
    "healthcare",
    "homemaker",
    "lawyer",
    "librarian",
    "marketing",
    "none",
    "other",
    "programmer",
    "retired",
    "salesman",
    "scientist",
    "student",
    "technician",
    "writer",
)
GENDERS = ("F", "M")
# `release_year` of a movie whose `u.item` release date is empty.
MISSING_YEAR = 0

_REPO_ROOT = Path(__file__).resolve().parents[1]
_FIX_HINT = (
    f"Set {DATA_DIR_ENV_VAR} or pass --movielens-dir to a directory "
    f"containing {RATINGS_FILE}, {ITEMS_FILE} and {USERS_FILE} from MovieLens 100K."
)
# Field widths above this cannot be valid ids, ratings or timestamps and would
# overflow int64 on conversion.
_MAX_DIGITS = 18
# A `u.item` release date such as 01-Jan-1995 or 4-Feb-1971; group 1 is the year.
_RELEASE_DATE = re.compile(
    r"\d{1,2}-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{4})"
)


class MovieLensDataError(Exception):
    """The MovieLens data is missing, unobtainable or malformed."""


@dataclasses.dataclass(frozen=True, eq=False)
class Ratings:
    """Column-wise MovieLens ratings; ids are 1-based as in `u.data`."""

    user_id: np.ndarray
    item_id: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return int(self.user_id.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class Items:
    """Movie metadata from `u.item`, one entry per line; ids are 1-based.

    Attributes:
      item_id: [num_lines] int64 movie ids.
      release_year: [num_lines] int64 year of the release date, `MISSING_YEAR`
        where the file leaves the date empty.
      genres: [num_lines, len(GENRES)] int64 0/1 flags in `GENRES` order.
    """

    item_id: np.ndarray
    release_year: np.ndarray
    genres: np.ndarray

    def __len__(self) -> int:
        return int(self.item_id.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class Users:
    """Demographics from `u.user`, one entry per line; ids are 1-based.

    The zip code column is not kept: nothing uses it and it is not numeric for
    every user.

    Attributes:
      user_id: [num_lines] int64 user ids.
      age: [num_lines] int64 age in years.
      gender: [num_lines] str, one of `GENDERS`.
      occupation: [num_lines] str, one of `OCCUPATIONS`.
    """

    user_id: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    occupation: np.ndarray

    def __len__(self) -> int:
        return int(self.user_id.shape[0])


def default_data_dir() -> Path:
    """Returns where MovieLens 100K is expected, preferring existing copies.

    Order: the `MLBANDITS_MOVIELENS_DIR` environment variable, the shared
    checkout next to the repository (`../shared/data/ml-100k`) if it holds
    `u.data`, else `data/ml-100k` inside the repository, which is git-ignored
    and is where `ensure_movielens` downloads to.
    """
    from_env = os.environ.get(DATA_DIR_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    shared = _REPO_ROOT.parent / "shared" / "data" / "ml-100k"
    if (shared / RATINGS_FILE).is_file():
        return shared
    return _REPO_ROOT / "data" / "ml-100k"


def find_movielens(data_dir: Union[str, Path] = "") -> Path:
    """`data_dir`, or the default location when empty, checked or downloaded.

    The download comes from `$MLBANDITS_MOVIELENS_URL` when set; "off" there
    turns downloads off, for machines that must not reach the internet.

    Raises:
      MovieLensDataError: the data is missing and downloads are off, or the
        download fails; the message says where to put the data instead.
    """
    directory = Path(data_dir) if data_dir else default_data_dir()
    url = os.environ.get(DOWNLOAD_URL_ENV_VAR) or MOVIELENS_URL
    if url == DOWNLOADS_OFF and not (directory / RATINGS_FILE).is_file():
        raise MovieLensDataError(
            f"MovieLens 100K is not in {directory} (no {RATINGS_FILE}) and downloads are off "
            f"({DOWNLOAD_URL_ENV_VAR}={DOWNLOADS_OFF}). {_FIX_HINT} Or unset "
            f"{DOWNLOAD_URL_ENV_VAR} to download it from GroupLens (5 MB)."
        )
    return ensure_movielens(directory, url=url)


def ensure_movielens(
    data_dir: Path,
    url: str = MOVIELENS_URL,
    md5: str = MOVIELENS_MD5,
    timeout: float = 60.0,
) -> Path:
    """Returns `data_dir` once it holds `u.data`, downloading it if needed.

    The archive at `url` is streamed to a temporary file next to `data_dir`
    and its MD5 compared with `md5` (GroupLens publishes only an MD5 for
    ml-100k.zip). Only members under `ml-100k/` are extracted, with that
    prefix stripped, into `data_dir`; with the default layout
    (`.../ml-100k`) this is the archive's own `ml-100k/` folder in
    `data_dir`'s parent. Nothing is extracted if the checksum differs.

    Raises:
      MovieLensDataError: if the download fails, the checksum differs, or the
        archive is not a MovieLens 100K zip. The message says how to point the
        code at an existing copy instead.
    """
    data_dir = Path(data_dir)
    if (data_dir / RATINGS_FILE).is_file():
        return data_dir
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir.parent) as scratch:
        archive = Path(scratch) / "ml-100k.zip"
        digest = _download(url, archive, timeout)
        if digest != md5.lower():
            raise MovieLensDataError(
                f"Checksum mismatch for {url}: MD5 {digest}, expected {md5}. "
                f"The download is corrupt or not MovieLens 100K; nothing was "
                f"extracted. {_FIX_HINT}"
            )
        _extract(archive, Path(scratch) / "extracted", data_dir, url)
    return data_dir


def _download(url: str, target: Path, timeout: float) -> str:
    """Streams `url` into `target` and returns the content's MD5 hex digest."""
    hasher = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            with target.open("wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    hasher.update(chunk)
                    out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise MovieLensDataError(
            f"Could not download MovieLens 100K from {url}: {err}. If this machine is offline, "
            f"fetch {MOVIELENS_URL} on one that is online and unzip it. {_FIX_HINT}"
        ) from err
    return hasher.hexdigest()


def _extract(archive: Path, staging: Path, data_dir: Path, url: str) -> None:
    """Unpacks `ml-100k/*` via `staging` so a failure leaves no partial copy."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [
                info
                for info in bundle.infolist()
                if info.filename.startswith(ARCHIVE_ROOT) and not info.is_dir()
            ]
            names = {info.filename[len(ARCHIVE_ROOT):] for info in members}
            if RATINGS_FILE not in names:
                raise MovieLensDataError(
                    f"Archive from {url} has no {ARCHIVE_ROOT}{RATINGS_FILE}. "
                    f"{_FIX_HINT}"
                )
            for info in members:
                relative = Path(info.filename[len(ARCHIVE_ROOT):])
                if relative.is_absolute() or ".." in relative.parts:
                    raise MovieLensDataError(
                        f"Archive from {url} has an unsafe member path "
                        f"{info.filename!r}. {_FIX_HINT}"
                    )
                destination = staging / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as src, destination.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as err:
        raise MovieLensDataError(
            f"Download from {url} is not a valid zip archive: {err}. {_FIX_HINT}"
        ) from err
    data_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            destination = data_dir / path.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)


def load_ratings(
    data_dir: Path, num_users: int = NUM_USERS, num_items: int = NUM_ITEMS
) -> Ratings:
    """Parses `data_dir/u.data` (whitespace-separated, 4 integer fields).

    Raises:
      MovieLensDataError: if the directory or file is missing, the file is
        empty, or a line has the wrong number of fields, a non-integer field,
        a rating outside 1..5, or an id outside 1..num_users / 1..num_items.
        Line errors name the file, the 1-based line number and the line.
    """
    path, lines = _read_lines(Path(data_dir), RATINGS_FILE, "Ratings", "ascii")
    rows = [line.split() for line in lines]
    field_counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    _raise_first(path, lines, field_counts != 4, "expected 4 fields")

    # Checked in Python, not with np.char: a Ctrl-C that lands inside
    # np.char's per-element calls was lost (the demo went on) in 1 of 3 tries.
    not_integer = np.fromiter(
        (not all(field.isdigit() and len(field) <= _MAX_DIGITS for field in row) for row in rows),
        dtype=bool,
        count=len(rows),
    )
    _raise_first(path, lines, not_integer, "fields must be non-negative integers")

    values = np.array(rows, dtype=str).astype(np.int64)
    user_id, item_id, rating, timestamp = values.T
    _raise_first(
        path,
        lines,
        (user_id < 1) | (user_id > num_users),
        f"user id must be in 1..{num_users}",
    )
    _raise_first(
        path,
        lines,
        (item_id < 1) | (item_id > num_items),
        f"item id must be in 1..{num_items}",
    )
    _raise_first(
        path,
        lines,
        (rating < MIN_RATING) | (rating > MAX_RATING),
        f"rating must be in {MIN_RATING}..{MAX_RATING}",
    )
    return Ratings(
        user_id=user_id.copy(),
        item_id=item_id.copy(),
        rating=rating.copy(),
        timestamp=timestamp.copy(),
    )


def load_items(data_dir: Path, num_items: int = NUM_ITEMS) -> Items:
    """Parses `data_dir/u.item`: latin-1 text, 24 '|'-separated fields.

    Fields are id | title | release date | video release date | IMDb URL |
    19 genre flags. Only the id, the release year and the genres are kept; the
    release date is empty or `D-Mon-YYYY` with a one- or two-digit day.

    Raises:
      MovieLensDataError: if the directory or file is missing, the file is
        empty, or a line has the wrong number of fields, an id outside
        1..num_items or seen before, a malformed release date, or a genre flag
        other than 0 or 1. Line errors name the file, the 1-based line number
        and the line.
    """
    path, lines = _read_lines(Path(data_dir), ITEMS_FILE, "Movie", "latin-1")
    num_fields = 5 + len(GENRES)
    item_ids, years, genres = [], [], []
    seen = set()
    for number, line in enumerate(lines, start=1):
        fields = line.split("|")
        if len(fields) != num_fields:
            raise _line_error(path, number, line, f"expected {num_fields} fields")
        item_id = _parse_id(path, number, line, fields[0], "item", num_items, seen)
        date = fields[2]
        match = _RELEASE_DATE.fullmatch(date)
        if date and match is None:
            raise _line_error(
                path, number, line, "release date must be empty or D-Mon-YYYY"
            )
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise _line_error(path, number, line, "genre flags must be 0 or 1")
        item_ids.append(item_id)
        years.append(int(match.group(1)) if match else MISSING_YEAR)
        genres.append([int(flag) for flag in flags])
    return Items(
        item_id=np.array(item_ids, dtype=np.int64),
        release_year=np.array(years, dtype=np.int64),
        genres=np.array(genres, dtype=np.int64).reshape(-1, len(GENRES)),
    )


def load_users(data_dir: Path, num_users: int = NUM_USERS) -> Users:
    """Parses `data_dir/u.user`: ASCII text, 5 '|'-separated fields.

    Fields are id | age | gender | occupation | zip code; the zip code is
    checked for presence only.

    Raises:
      MovieLensDataError: if the directory or file is missing, the file is
        empty, or a line has the wrong number of fields, an id outside
        1..num_users or seen before, an age that is not a positive integer, a
        gender outside `GENDERS` or an occupation outside `OCCUPATIONS`. Line
        errors name the file, the 1-based line number and the line.
    """
    path, lines = _read_lines(Path(data_dir), USERS_FILE, "User", "ascii")
    user_ids, ages, genders, occupations = [], [], [], []
    seen = set()
    for number, line in enumerate(lines, start=1):
        fields = line.split("|")
        if len(fields) != 5:
            raise _line_error(path, number, line, "expected 5 fields")
        user_id = _parse_id(path, number, line, fields[0], "user", num_users, seen)
        age, gender, occupation = fields[1:4]
        if not (age.isascii() and age.isdigit() and len(age) <= 3 and int(age) > 0):
            raise _line_error(path, number, line, "age must be a positive integer")
        if gender not in GENDERS:
            raise _line_error(path, number, line, f"gender must be one of {GENDERS}")
        if occupation not in OCCUPATIONS:
            raise _line_error(
                path, number, line, "occupation must be one listed in u.occupation"
            )
        user_ids.append(user_id)
        ages.append(int(age))
        genders.append(gender)
        occupations.append(occupation)
    return Users(
        user_id=np.array(user_ids, dtype=np.int64),
        age=np.array(ages, dtype=np.int64),
        gender=np.array(genders, dtype=str),
        occupation=np.array(occupations, dtype=str),
    )


def _read_lines(
    data_dir: Path, name: str, kind: str, encoding: str
) -> Tuple[Path, List[str]]:
    """Returns `data_dir/name` and its lines, without line endings.

    Raises:
      MovieLensDataError: if the directory or file is missing, the file is
        empty, or a byte is not valid in `encoding` (naming its line).
    """
    path = data_dir / name
    if not data_dir.is_dir():
        raise MovieLensDataError(
            f"MovieLens directory {data_dir} does not exist (looked for "
            f"{path}). {_FIX_HINT}"
        )
    if not path.is_file():
        raise MovieLensDataError(f"{kind} file {path} not found. {_FIX_HINT}")
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line_number = raw.count(b"\n", 0, err.start) + 1
        line = raw.split(b"\n")[line_number - 1].decode(encoding, "replace")
        problem = f"non-{encoding.upper()} byte"
        raise _line_error(path, line_number, line, problem) from err
    # Split on "\n" only so line numbers agree with editors and `sed -n`.
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise MovieLensDataError(f"{kind} file {path} is empty. {_FIX_HINT}")
    return path, lines


def _parse_id(
    path: Path,
    number: int,
    line: str,
    field: str,
    kind: str,
    limit: int,
    seen: Set[int],
) -> int:
    """Parses a 1-based id field, rejecting values outside 1..limit or repeats."""
    if not (field.isascii() and field.isdigit() and len(field) <= _MAX_DIGITS):
        raise _line_error(path, number, line, f"{kind} id must be an integer")
    value = int(field)
    if not 1 <= value <= limit:
        raise _line_error(path, number, line, f"{kind} id must be in 1..{limit}")
    if value in seen:
        raise _line_error(path, number, line, f"duplicate {kind} id {value}")
    seen.add(value)
    return value


def _raise_first(path: Path, lines: list[str], bad: np.ndarray, problem: str) -> None:
    """Raises for the first line flagged in `bad`, if any."""
    flagged = np.flatnonzero(bad)
    if flagged.size:
        index = int(flagged[0])
        raise _line_error(path, index + 1, lines[index], problem)


def _line_error(
    path: Path, line_number: int, line: str, problem: str
) -> MovieLensDataError:
    """Builds a `file:line: problem; got 'text'` error, truncating long lines."""
    shown = line if len(line) <= 120 else line[:117] + "..."
    return MovieLensDataError(f"{path}:{line_number}: {problem}; got {shown!r}")


def ratings_matrix(
    ratings: Ratings, num_users: int = NUM_USERS, num_items: int = NUM_ITEMS
) -> np.ndarray:
    """Returns the dense users x items float matrix, 0 where unrated.

    Matches `tf_agents.bandits.environments.dataset_utilities
    .load_movielens_data`, except that a repeated (user, item) pair is an
    error rather than silently keeping the last rating.

    Raises:
      ValueError: on ids outside the matrix or duplicate (user, item) pairs.
    """
    users = np.asarray(ratings.user_id) - 1
    items = np.asarray(ratings.item_id) - 1
    if users.size and (
        users.min() < 0
        or users.max() >= num_users
        or items.min() < 0
        or items.max() >= num_items
    ):
        raise ValueError(
            f"Ratings reference ids outside a {num_users} x {num_items} matrix."
        )
    flat = users * num_items + items
    if np.unique(flat).size != flat.size:
        raise ValueError("Ratings contain duplicate (user, item) pairs.")
    matrix = np.zeros((num_users, num_items), dtype=np.float64)
    matrix[users, items] = ratings.rating
    return matrix
