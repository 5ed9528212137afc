"""The real GSM8K loader (local JSON lines, and the datasets code path on a local folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnlab.data import BASE_COLUMNS, DataFormatError, load_base_dataset
from attnlab.data.gsm8k import classify_topic, key_spans, parse_final_answer

from conftest import GSM8K_DIR as GSM8K
SPEC = {"loader": "gsm8k", "train_path": str(GSM8K / "train.jsonl"), "test_path": str(GSM8K / "test.jsonl")}


@pytest.fixture(scope="module")
def test_split():
    return load_base_dataset(SPEC, "test", seed=0)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_loads_all_test_items_in_file_order(test_split) -> None:
    raw = [json.loads(line) for line in (GSM8K / "test.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert list(test_split.columns) == list(BASE_COLUMNS)
    assert len(test_split) == len(raw) == 1319
    assert test_split["question"].tolist() == [r["question"] for r in raw]
    assert test_split["answer"].tolist() == [r["answer"] for r in raw]
    assert set(test_split["family"]) == {"gsm8k"} and set(test_split["split"]) == {"test"}
    assert test_split["id"].iloc[12] == "gsm8k-test-00012"
    first = test_split.iloc[0]
    assert first["answer_number"] == 18.0
    assert [first["question"][s["start"] : s["end"]] for s in first["key_spans"]] == ["16", "three", "four", "2"]


def test_n_keeps_the_first_items(test_split) -> None:
    head = load_base_dataset(SPEC, "test", seed=0, n=7)
    assert head.equals(test_split.iloc[:7].reset_index(drop=True))


def test_answer_numbers_match_final_lines(test_split) -> None:
    for answer, number in zip(test_split["answer"], test_split["answer_number"]):
        assert float(answer.strip().splitlines()[-1][5:].replace(",", "")) == number


def test_parse_final_answer_handles_separators_and_negatives() -> None:
    assert parse_final_answer("a\n#### 1,000") == 1000.0
    assert parse_final_answer("a\n#### -5") == -5.0
    assert parse_final_answer("x\n####3.25\n") == 3.25
    with pytest.raises(ValueError, match="'#### N'"):
        parse_final_answer("the answer is 5")


def test_key_spans_are_numbers_the_solution_uses() -> None:
    question = "Tom has 12 apples and 7 pears. He is 40 years old. He eats 150% of 2 pears."
    answer = "He has 12+7=<<12+7=19>>19 fruits.\nHe eats 2*1.5=<<2*1.5=3>>3 pears.\n#### 16"
    spans = key_spans(question, answer)
    assert [question[s["start"] : s["end"]] for s in spans] == ["12", "7", "150", "2"]  # 40 is unused


def test_topic_classifier() -> None:
    assert classify_topic("A farmer has 5 cows and 3 chickens in the barn.") == "farming"
    assert classify_topic("The teacher gave each student in the class 3 pencils.") == "school"
    assert classify_topic("Sam drives 40 miles per hour for 3 hours on the train trip.") == "travel"
    assert classify_topic("Xyz qwerty.") == "general"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"question": "Q?", "answer": "#### 3"', "line 2: bad JSON"),
        ('{"question": "Q?"}', "line 2: missing field 'answer'"),
        ('{"question": 5, "answer": "#### 3"}', "line 2: field 'question' must be a non-empty string"),
        ('{"question": "Q?", "answer": "It is 3."}', "line 2: no final '#### N' answer line"),
        ('["Q?", "#### 3"]', "line 2: expected a JSON object"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", ['{"question": "Ok?", "answer": "1+1=<<1+1=2>>2\\n#### 2"}', line])
    with pytest.raises(DataFormatError, match=rf"bad\.jsonl: {message}"):
        load_base_dataset({"loader": "gsm8k", "test_path": str(path)}, "test", seed=0)
    # n=1 stops before the bad line
    assert len(load_base_dataset({"loader": "gsm8k", "test_path": str(path)}, "test", seed=0, n=1)) == 1


def test_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no train_path and no hub_id"):
        load_base_dataset({"loader": "gsm8k", "test_path": "x"}, "train", seed=0)
    with pytest.raises(ValueError, match="unknown keys"):
        load_base_dataset({**SPEC, "path": "x"}, "test", seed=0)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_base_dataset({"loader": "gsm8k", "test_path": str(tmp_path / "missing.jsonl")}, "test", seed=0)


def test_hub_code_path_with_a_local_dataset_folder(tmp_path: Path) -> None:
    """`hub_id` goes through datasets.load_dataset; a local folder of JSON lines exercises it offline."""
    folder = tmp_path / "toy_gsm8k"
    folder.mkdir()
    rows = [{"question": f"Ann has {i} cats and 2 dogs. How many pets?", "answer": f"{i}+2=<<{i}+2={i + 2}>>{i + 2}\n#### {i + 2}"} for i in range(3, 8)]
    write_lines(folder / "test.jsonl", [json.dumps(r) for r in rows])
    frame = load_base_dataset({"loader": "gsm8k", "hub_id": str(folder)}, "test", seed=0, n=3)
    assert frame["answer_number"].tolist() == [5.0, 6.0, 7.0]
    assert [q[s["start"] : s["end"]] for q, spans in zip(frame["question"], frame["key_spans"]) for s in spans][:2] == ["3", "2"]
    with pytest.raises(RuntimeError, match="could not load hub dataset"):
        load_base_dataset({"loader": "gsm8k", "hub_id": str(tmp_path / "nothing_here")}, "test", seed=0)


GOOD = '{"question": "Ok?", "answer": "1+1=<<1+1=2>>2\\n#### 2"}'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty\.jsonl: line 1: no GSM8K items \(the file is empty\)"),
        (b"\n   \n\n", r"empty\.jsonl: line 3: no GSM8K items \(its 3 line\(s\) are blank\)"),
        (GOOD.encode() + b'\n{"question": "caf\xe9?", "answer": "#### 3"}\n', r"empty\.jsonl: line 2: not UTF-8 \(byte 0xe9"),
        (f"{GOOD}\n\n{GOOD}\n".encode(), r"empty\.jsonl: line 3: duplicate item: the same question as line 1"),
    ],
)
def test_bad_files_get_one_line_naming_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        load_base_dataset({"loader": "gsm8k", "test_path": str(path)}, "test", seed=0)


def test_data_cli_reports_a_bad_file_in_one_line_with_status_2(tmp_path: Path, capsys) -> None:
    from attnlab.cli import main

    path = tmp_path / "blank.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    spec = json.dumps({"loader": "gsm8k", "test_path": str(path)})
    out = tmp_path / "x.parquet"
    assert main(["data", "base", "--spec", spec, "--split", "test", "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"attnlab: error: {path}: line 2: no GSM8K items (its 2 line(s) are blank)"
    assert not out.exists()
    write_lines(path, [GOOD])
    with pytest.raises(SystemExit) as exit_info:  # --n 0 would write a table without items
        main(["data", "base", "--spec", spec, "--split", "test", "--seed", "1", "--n", "0", "--out", str(out)])
    assert exit_info.value.code == 2 and "--n: expected an integer >= 1" in capsys.readouterr().err
