"""A user's own CSV/TSV tables as people export them, through ``marquee data validate`` and the
pipeline's ingest step: what the file says is what is loaded, or the file is refused naming the
table, column and row. Before, a header naming a column twice loaded the first copy, a quote
left open in a value merged the rows after it into one (items vanished, a year came from
another row), and the texts "NA", "None", "null" were read as missing values in text columns
too (a title "None" was refused as missing)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Dataset
from typer.testing import CliRunner

from components.factory import build_components
from marquee.commands.data import app
from recsys.data.errors import DataValidationError
from tests.unit.own_tables import tables

runner = CliRunner()
C = build_components()


def _tables() -> dict[str, pd.DataFrame]:
    return tables(n_items=6)


def _write(directory: Path, suffix: str = ".csv", **texts: str) -> Path:
    """The tables as pandas writes them, except those given as file text."""
    directory.mkdir(parents=True)
    for name, frame in _tables().items():
        path = directory / f"{name}{suffix}"
        if name in texts:
            path.write_text(texts[name], encoding="utf-8")
        else:
            frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    return directory


def _validate(directory: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", str(directory)])
    return result.exit_code, result.output


def test_a_column_named_twice_is_refused_naming_it(tmp_path: Path) -> None:
    """An export that joined two tables: two ``title`` columns. Which one is the title is not
    for the loader to guess (before: the first, silently)."""
    items = ("item_id,title,year,genres,title\n10,A,1995,Action,Old A\n11,B,2001,Romance,Old B\n"
             "12,C,1990,Comedy,Old C\n13,D,1999,Drama,x\n14,E,1986,Drama,x\n15,F,0,unknown,x\n")
    code, out = _validate(_write(tmp_path / "data", items=items))
    assert code == 1, out
    assert "items.title: duplicate column" in out
    assert "items.csv" in out


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_an_unclosed_quote_is_refused_not_merged_with_the_next_rows(tmp_path: Path,
                                                                    suffix: str) -> None:
    """A title starting with a quote that closes lines later: the reader joined the rows in
    between into one title and took the year and genres of the last one; items 13 and 14 were
    gone, and since no interaction named them nothing was reported."""
    sep = "\t" if suffix == ".tsv" else ","
    rows = [["item_id", "title", "year", "genres"], ["10", "A", "1995", "Action"],
            ["11", "B", "2001", "Romance"], ["12", '"Weird Al', "1990", "Comedy"],
            ["13", "C", "1999", "Drama"], ["14", 'The "Best" D', "1986", "Drama"],
            ["15", "E", "0", "unknown"]]
    items = "".join(sep.join(row) + "\n" for row in rows)
    directory = _write(tmp_path / "data", suffix, items=items)
    code, out = _validate(directory)
    assert code == 1, out
    assert "items.title: unclosed quote" in out
    assert "at data row 3" in out
    with pytest.raises(DataValidationError, match="items.title: unclosed quote"):
        C.ingest.python_func(source=str(directory), home=str(tmp_path / "home"),
                             dataset=Dataset(name="dataset", uri=str(tmp_path / "out")))
    assert not (tmp_path / "out" / "items.parquet").exists()


def test_quoted_values_written_by_pandas_still_read_back_exactly(tmp_path: Path) -> None:
    """The other side of the quote check: pandas quotes a value holding the separator or a
    quote, and such a file is read back as written."""
    items = _tables()["items"].assign(title=['"Crocodile" Dundee', 'Tab\tbar', "12\" Vinyl",
                                             "a, b", "C", "D"])
    directory = _write(tmp_path / "data", ".tsv",
                       items=items.to_csv(index=False, sep="\t"))
    out = tmp_path / "out"
    C.ingest.python_func(source=str(directory), home=str(tmp_path / "home"),
                         dataset=Dataset(name="dataset", uri=str(out)))
    written = pd.read_parquet(out / "items.parquet")
    assert written["title"].tolist() == items["title"].tolist()


def test_na_none_and_null_are_text_not_missing(tmp_path: Path) -> None:
    """Only an empty cell is missing: a film called "None" keeps its title (before: refused
    as a missing title, e.g. [None])."""
    items = _tables()["items"].assign(title=["NA", "None", "null", "N/A", "nan", "NULL"])
    directory = _write(tmp_path / "data", items=items.to_csv(index=False))
    code, out = _validate(directory)
    assert code == 0, out
    ds_dir = tmp_path / "out"
    C.ingest.python_func(source=str(directory), home=str(tmp_path / "home"),
                         dataset=Dataset(name="dataset", uri=str(ds_dir)))
    assert pd.read_parquet(ds_dir / "items.parquet")["title"].tolist() == items["title"].tolist()


@pytest.mark.parametrize("table,column", [("interactions", "rating"), ("items", "year")])
def test_na_in_a_number_column_is_a_missing_number_as_an_empty_cell_is(
        tmp_path: Path, table: str, column: str) -> None:
    """R's NA, pandas' NaN and SQL's NULL mark a missing number in exported files: in a number
    column they read as an empty cell does (what the column does with a missing value), while
    in a text column they stay text (the test above)."""
    answers = []
    for marker in ("", "NA", "NULL", "nan"):
        frame = _tables()[table].astype({column: object})
        frame.loc[1, column] = marker
        code, out = _validate(_write(tmp_path / f"data{len(answers)}",
                                     **{table: frame.to_csv(index=False)}))
        answers.append((code, out.replace(f"data{len(answers)}", "data")))
    assert answers[1:] == [answers[0]] * 3, answers


def test_a_parquet_id_written_as_the_index_is_read_as_its_column(tmp_path: Path) -> None:
    """``users.set_index("user_id").to_parquet(…)`` stores user_id as a column of the file;
    before, pandas' metadata made it the frame's index on reading and the file was refused as
    having no user_id."""
    directory = tmp_path / "data"
    directory.mkdir()
    for name, frame in _tables().items():
        key = "user_id" if name == "users" else "item_id" if name == "items" else None
        (frame.set_index(key) if key else frame).to_parquet(directory / f"{name}.parquet")
    code, out = _validate(directory)
    assert code == 0, out
    out_dir = tmp_path / "out"
    C.ingest.python_func(source=str(directory), home=str(tmp_path / "home"),
                         dataset=Dataset(name="dataset", uri=str(out_dir)))
    assert pd.read_parquet(out_dir / "users.parquet")["user_id"].tolist() == [1, 2, 3]
