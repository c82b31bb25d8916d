"""MovieLens-100K from the recbole wheel: exact counts, clean keys, parsed genres, idempotent import,
and none of GroupLens' files in git (their licence forbids redistribution)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from models.datasets import movielens
from models.datasets.movielens import ML100K_TABLES, import_ml100k, load_ml100k, movielens_files
from models.lake.tables import WriteResult, open_table
from models.settings import Settings, get_settings

Imported = tuple[Settings, dict[str, WriteResult]]
ROOT = Path(__file__).resolve().parents[2]
ML100K_GENRES = {
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
}  # fmt: skip


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    """One import per module: parsing and writing 100k ratings takes about half a second."""
    settings = get_settings(data_dir=tmp_path_factory.mktemp("ml100k"))
    yield settings, import_ml100k(settings)


def test_the_wheel_ships_the_three_atomic_files() -> None:
    files = movielens_files()
    assert sorted(files) == ["items", "ratings", "users"]
    assert all(path.is_file() and "ml-100k" in path.parts for path in files.values())


def test_counts_are_those_of_ml100k(ml100k: Imported) -> None:
    settings, results = ml100k
    counts = {name: r.row_count for name, r in results.items()}
    assert counts == {"users": 943, "items": 1682, "ratings": 100000}
    assert all(r.rows_written == r.row_count for r in results.values())
    users, items, ratings = load_ml100k(settings)
    assert (users.height, items.height, ratings.height) == (943, 1682, 100000)


def test_tables_live_in_their_own_namespace(ml100k: Imported) -> None:
    settings, _ = ml100k
    for spec in ML100K_TABLES.values():
        assert spec.name.startswith("datasets/ml100k/")
        assert (Path(settings.lake_root) / spec.name / "_delta_log").is_dir()


def test_ratings_are_1_to_5_and_reference_known_users_and_items(
    ml100k: Imported,
) -> None:
    users, items, ratings = load_ml100k(ml100k[0])
    assert ratings["rating"].min() == 1.0 and ratings["rating"].max() == 5.0
    assert ratings.join(users, on="user_id", how="anti").is_empty()
    assert ratings.join(items, on="item_id", how="anti").is_empty()
    assert not ratings.select("user_id", "item_id").is_duplicated().any()
    first = ratings.filter(user_id="196", item_id="242")  # the first line of the .inter file
    assert first["rating"].to_list() == [3.0]
    assert first["ts"].to_list() == [dt.datetime(1997, 12, 4, 15, 55, 49, tzinfo=dt.UTC)]


def test_users_and_items_are_typed(ml100k: Imported) -> None:
    frames = load_ml100k(ml100k[0])
    for frame, spec in zip(frames, ML100K_TABLES.values(), strict=True):
        declared = pl.from_arrow(spec.schema.empty_table())
        assert isinstance(declared, pl.DataFrame) and frame.schema == declared.schema, spec.name
    users, items, _ = frames
    assert users["age"].dtype == pl.Int32 and items["genres"].dtype == pl.List(pl.String)
    assert set(users["gender"]) == {"M", "F"}
    assert users.filter(user_id="1").row(0) == ("1", 24, "M", "technician", "85711")
    toy_story = items.filter(item_id="1").row(0, named=True)
    assert toy_story == {
        "item_id": "1",
        "title": "Toy Story",
        "release_year": 1995,
        "genres": ["Animation", "Children's", "Comedy"],
    }
    assert set(items["genres"].explode()) == ML100K_GENRES
    # RecBole's copy has no year for item 267 ("unkonwn") and "V" for item 1412 (a split title).
    assert sorted(items.filter(pl.col("release_year").is_null())["item_id"]) == ["1412", "267"]


def test_a_second_import_commits_nothing(ml100k: Imported) -> None:
    settings, first = ml100k
    again = import_ml100k(settings)
    assert {n: r.version for n, r in again.items()} == {n: r.version for n, r in first.items()}
    assert all(r.rows_written == 0 for r in again.values())


def test_changed_content_is_rewritten_then_restored(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path)
    users = movielens.parse_users(movielens_files()["users"])
    first = movielens.write_snapshot(settings, movielens.USERS, users)
    older = movielens.write_snapshot(settings, movielens.USERS, users.with_columns(pl.col("age") + 1))
    restored = movielens.write_snapshot(settings, movielens.USERS, users)
    assert (first.version, older.version, restored.version) == (0, 1, 2)
    assert movielens.write_snapshot(settings, movielens.USERS, users).version == 2


def test_a_reshaped_atomic_file_fails_naming_its_header(tmp_path: Path) -> None:
    path = tmp_path / "ml-100k.user"
    path.write_text("user_id:token\tage:float\n1\t24\n")
    with pytest.raises(ValueError, match=r"ml-100k.user: header \['user_id:token', 'age:float'\]"):
        movielens.parse_users(path)


def test_missing_recbole_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", absent)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps recbole==\d"):
        movielens_files()


def test_load_before_import_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run import_ml100k"):
        load_ml100k(get_settings(data_dir=tmp_path))
    assert open_table(get_settings(data_dir=tmp_path), movielens.RATINGS.name) is None


def test_the_data_is_not_in_git() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    names = tracked.stdout.splitlines()
    assert names, "git ls-files listed nothing: not a checkout?"
    assert not [n for n in names if "ml-100k" in n or n.endswith((".inter", ".item", ".user"))]
