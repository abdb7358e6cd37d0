"""Datasets, column mapping, chat template and the resumable prompt batcher."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jgrpo.data import (
    EVAL_PROMPT_TEMPLATE,
    OPEN_RS_SYSTEM_PROMPT,
    ColumnMap,
    DatasetError,
    Example,
    Prompt,
    PromptBatcher,
    encode_prompts,
    load_examples,
    load_tokenizer,
    read_rows,
    render_prompt,
    truncate_left,
)
from tests.test_hub import REPO_ROOT, offline_env, offline_hub, put_in_hub_cache  # noqa: F401 (a fixture)

BOS, USER, ASSISTANT = "<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- prompts ---------------------------------------------------------------------------


def test_training_prompt_is_the_r1_template_with_system_prompt(tokenizer):
    problem = "What is $1+1$? Give the answer in \\boxed{}."
    text = render_prompt(tokenizer, problem, OPEN_RS_SYSTEM_PROMPT)
    assert text == f"{BOS}{OPEN_RS_SYSTEM_PROMPT}{USER}{problem}{ASSISTANT}<think>\n"


def test_eval_prompt_has_no_system_prompt(tokenizer):
    problem = "Find $x$."
    text = render_prompt(tokenizer, problem, None, EVAL_PROMPT_TEMPLATE)
    user = EVAL_PROMPT_TEMPLATE.replace("{Question}", problem)
    assert text == f"{BOS}{USER}{user}{ASSISTANT}<think>\n"
    assert user.startswith("Solve the following math problem efficiently and clearly.  The last")
    assert user.endswith("Think step by step before answering.\n\nFind $x$.")


def test_prompt_constants_keep_open_rs_quirks():
    # YAML kept the doubled braces; the model was trained on them.
    assert "within \\boxed{{}} . The reasoning" in OPEN_RS_SYSTEM_PROMPT
    assert OPEN_RS_SYSTEM_PROMPT.endswith("Note that respond by English, NOT use other languages.")
    assert "$\\boxed{ANSWER}$. I hope it is correct' (without quotes)" in EVAL_PROMPT_TEMPLATE


def test_encoded_ids_have_one_bos_and_round_trip(tokenizer):
    examples = [
        Example("a", "Compute $2^{10}$.", "1024"),
        Example("b", "Résumé: 大于 ∑ ", "1"),
    ]
    for prompt in encode_prompts(examples, tokenizer):
        assert prompt.token_ids[0] == tokenizer.bos_token_id
        assert prompt.token_ids.count(tokenizer.bos_token_id) == 1
        assert tokenizer.decode(prompt.token_ids) == prompt.text
        assert prompt.token_ids[-2:] == tuple(tokenizer.convert_tokens_to_ids(["<think>", "Ċ"]))


def test_truncate_left_keeps_the_end():
    assert truncate_left([1, 2, 3, 4, 5], 3) == [3, 4, 5]
    assert truncate_left([1, 2], 3) == [1, 2]
    assert truncate_left([1, 2], None) == [1, 2]


# --- loading ---------------------------------------------------------------------------


def test_bundled_training_set_and_its_two_empty_answers():
    with pytest.raises(DatasetError, match=r"row 5328 \(id 'math-5328'\) has no answer"):
        load_examples("bundled:deepscaler_math")
    loaded = load_examples("bundled:deepscaler_math", drop_missing_answers=True)
    assert len(loaded.examples) == 7472
    assert loaded.dropped_ids == ["math-5328", "math-5330"]
    assert loaded.examples[0].id == "math-0" and loaded.examples[0].answer == "0"


def test_column_mapping(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"question": "Q1", "final": 27.0, "worked": "so $\\boxed{27}$"},
            {"question": "Q2", "final": 2.5},
            {"question": "Q3", "final": "x+1", "worked": None},
        ],
    )
    columns = ColumnMap(problem="question", answer="final", solution="worked", id=None)
    examples = load_examples(path, columns).examples
    assert examples == [
        Example("0", "Q1", "27", "so $\\boxed{27}$"),
        Example("1", "Q2", "2.5", None),
        Example("2", "Q3", "x+1", None),
    ]


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="dataset file not found: .*nope.jsonl"):
        load_examples("/tmp/definitely/nope.jsonl")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("problem,answer\n1+1,2\n")
    with pytest.raises(DatasetError, match=r"d.txt: unsupported dataset file type '.txt'; use .jsonl, .json"):
        load_examples(path)


def test_invalid_jsonl_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"problem": "p", "answer": "1"}\n{"problem": oops}\n')
    with pytest.raises(DatasetError, match=r"d.jsonl:2: not valid JSON"):
        load_examples(path)


@pytest.mark.parametrize("missing", ["problem", "answer"])
def test_missing_column(tmp_path, missing):
    row = {"problem": "p", "answer": "1", "id": "r0"}
    del row[missing]
    path = write_jsonl(tmp_path / "d.jsonl", [row])
    message = rf"d.jsonl: no {missing} column '{missing}' \(columns: "
    with pytest.raises(DatasetError, match=message):
        load_examples(path)


def test_row_without_answer(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"id": "a", "problem": "p", "answer": "1"}, {"id": "b", "problem": "q", "answer": "  "}],
    )
    message = r"d.jsonl: row 1 \(id 'b'\) has no answer in column 'answer'"
    with pytest.raises(DatasetError, match=message):
        load_examples(path)
    loaded = load_examples(path, drop_missing_answers=True)
    assert [e.id for e in loaded.examples] == ["a"] and loaded.dropped_ids == ["b"]


def test_unknown_bundled_dataset():
    message = "unknown bundled dataset 'open-rs'; bundled: deepscaler_math"
    with pytest.raises(DatasetError, match=message):
        load_examples("bundled:open-rs")


def test_parquet(tmp_path):
    import pyarrow
    import pyarrow.parquet

    path = tmp_path / "d.parquet"
    table = pyarrow.table({"problem": ["p1", "p2"], "answer": ["1", "2"]})
    pyarrow.parquet.write_table(table, path)
    assert [e.answer for e in load_examples(path).examples] == ["1", "2"]


# --- file formats, folders and Hub names (offline) ------------------------------------

ROWS = [
    {"id": "r0", "problem": "What is $1+1$?", "answer": "2", "solution": "$\\boxed{2}$"},
    {"id": "r1", "problem": "Name the root of $x-7$.", "answer": "007", "solution": "x = 7"},
]


def write_format(path, rows):
    """``rows`` written as ``path``'s suffix says, the way people usually produce such files."""
    suffix = path.suffix
    if suffix == ".jsonl":
        write_jsonl(path, rows)
    elif suffix == ".json":
        path.write_text(json.dumps(rows, indent=2))  # an array of objects
    elif suffix == ".csv":
        import csv

        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet

        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".json", ".jsonl", ".csv"])
def test_file_formats_load_with_their_columns(tmp_path, suffix):
    path = write_format(tmp_path / f"train{suffix}", ROWS)
    assert read_rows(path) == ROWS  # CSV keeps text as written: "007" stays "007"
    assert load_examples(path).examples == [
        Example("r0", "What is $1+1$?", "2", "$\\boxed{2}$"),
        Example("r1", "Name the root of $x-7$.", "007", "x = 7"),
    ]


def test_json_variants(tmp_path):
    # datasets' to_json writes JSON lines, usually named .json
    lines = write_jsonl(tmp_path / "lines.json", ROWS)
    assert read_rows(lines) == ROWS
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 1, "data": ROWS}))
    assert read_rows(wrapped) == ROWS
    scalar = tmp_path / "scalar.json"
    scalar.write_text("[1, 2]")
    with pytest.raises(DatasetError, match=r"scalar.json: item 0 of the array is a int, not an object"):
        read_rows(scalar)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"problem": "p"},\n oops]')
    with pytest.raises(DatasetError, match=r"broken.json:2: not valid JSON"):
        read_rows(broken)


def test_csv_empty_answer_and_ragged_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,problem,answer\na,p,1\nb,q,\n")
    with pytest.raises(DatasetError, match=r"d.csv: row 1 \(id 'b'\) has no answer in column 'answer'"):
        load_examples(path)
    assert load_examples(path, drop_missing_answers=True).dropped_ids == ["b"]
    path.write_text("problem,answer\np,1\nq,2,extra\n")
    with pytest.raises(DatasetError, match=r"d.csv:3: 3 fields, the header has 2"):
        load_examples(path)


def test_parquet_nan_answer_is_missing(tmp_path):
    import pyarrow
    import pyarrow.parquet

    path = tmp_path / "d.parquet"
    table = pyarrow.table({"problem": ["p", "q"], "answer": [27.0, float("nan")]})
    pyarrow.parquet.write_table(table, path)
    loaded = load_examples(path, drop_missing_answers=True)
    assert [e.answer for e in loaded.examples] == ["27"] and loaded.dropped_ids == ["1"]


def test_subset_is_refused_for_a_file(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(DatasetError, match=r"d.jsonl: a subset \('hard'\) applies only to Hugging Face datasets"):
        load_examples(path, subset="hard")


def test_save_to_disk_folder(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    train, test = ROWS[:1], ROWS[1:]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(train),
                          "test": datasets.Dataset.from_list(test)}).save_to_disk(str(folder))
    assert read_rows(folder) == train
    assert read_rows(folder, split="test") == test
    with pytest.raises(DatasetError, match=r"saved has no split 'validation'; splits: train, test$"):
        read_rows(folder, split="validation")
    single = tmp_path / "single"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(single))
    assert read_rows(single) == ROWS


def parquet_bytes(rows):
    import io

    import pyarrow
    import pyarrow.parquet

    buffer = io.BytesIO()
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


# A dataset repository as `datasets`' push_to_hub lays it out: one folder of Parquet shards per
# subset, the subsets and their splits declared in the README's YAML header.
HUB_README = b"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  default: true
- config_name: hard
  data_files:
  - split: train
    path: hard/train-*
  - split: test
    path: hard/test-*
---
# maths problems
"""
HARD = [{"problem": "Solve $x^2 = 4$, $x>0$.", "answer": "2"}, {"problem": "3*3?", "answer": "9"}]


@pytest.fixture
def hub_dataset(offline_hub):
    """'maths-org/problems' in the Hub cache, as `hf download --repo-type dataset` (or an
    earlier online `load_dataset`) leaves it; HF_HUB_OFFLINE=1, the datasets cache empty."""
    return put_in_hub_cache(offline_hub, "maths-org/problems", {
        "README.md": HUB_README,
        "data/train-00000-of-00001.parquet": parquet_bytes(ROWS),
        "hard/train-00000-of-00001.parquet": parquet_bytes(HARD),
        "hard/test-00000-of-00001.parquet": parquet_bytes(HARD[:1]),
    }, repo_type="dataset")


def test_hub_name_loads_offline_from_the_cache(hub_dataset):
    assert [e.id for e in load_examples("maths-org/problems").examples] == ["r0", "r1"]
    assert read_rows("maths-org/problems", subset="hard") == HARD
    assert read_rows("maths-org/problems", split="test", subset="hard") == HARD[:1]
    assert read_rows("maths-org/problems", split="train[1:]+test", subset="hard") == HARD[1:] + HARD[:1]


def test_hub_name_errors_name_what_exists(hub_dataset, offline_hub):
    with pytest.raises(DatasetError, match=r"^Hugging Face dataset 'maths-org/problems' has no split 'validation'; "
                                           r"splits: train, test$"):
        read_rows("maths-org/problems", split="validation", subset="hard")
    with pytest.raises(DatasetError, match=r"^Hugging Face dataset 'maths-org/problems' has no subset 'easy'; "
                                           r"subsets: default, hard$"):
        read_rows("maths-org/problems", subset="easy")
    readme = HUB_README.replace(b"config_name: default", b"config_name: easy").replace(b"  default: true\n", b"")
    put_in_hub_cache(offline_hub, "maths-org/two", {
        "README.md": readme, "data/train-00000-of-00001.parquet": parquet_bytes(ROWS),
        "hard/train-00000-of-00001.parquet": parquet_bytes(HARD),
        "hard/test-00000-of-00001.parquet": parquet_bytes(HARD[:1])}, repo_type="dataset")
    with pytest.raises(DatasetError, match=r"^Hugging Face dataset 'maths-org/two' has several subsets; "
                                           r"choose one of: easy, hard$"):
        read_rows("maths-org/two")


def test_hub_name_offline_and_not_cached_is_one_line(offline_hub):
    with pytest.raises(DatasetError) as info:
        load_examples("knoveleng/open-rs")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("Hugging Face dataset 'knoveleng/open-rs' is not a local file or folder, "
                              "HF_HUB_OFFLINE is set")
    assert str(offline_hub) in message and "`hf download --repo-type dataset knoveleng/open-rs`" in message


def test_hub_name_offline_in_a_fresh_process(tmp_path):
    """HF_HUB_OFFLINE / HF_HUB_CACHE set before Python starts, as a user sets them."""
    env = {**os.environ, **offline_env(tmp_path)}
    put_in_hub_cache(Path(env["HF_HUB_CACHE"]), "maths-org/problems", {
        "README.md": HUB_README, "data/train-00000-of-00001.parquet": parquet_bytes(ROWS),
        "hard/train-00000-of-00001.parquet": parquet_bytes(HARD),
        "hard/test-00000-of-00001.parquet": parquet_bytes(HARD[:1])}, repo_type="dataset")
    code = ("from jgrpo.data import load_examples\n"
            "print([e.answer for e in load_examples('maths-org/problems', subset='hard').examples])")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['2', '9']"
    assert any(Path(env["HF_DATASETS_CACHE"]).iterdir())  # prepared in the cache the environment names


# --- batching --------------------------------------------------------------------------


def make_prompts(n):
    return [
        Prompt(Example(f"id{i}", f"problem {i}", str(i)), f"text {i}", tuple(range(i % 7 + 1)))
        for i in range(n)
    ]


def ids_of(batch):
    return [p.example.id for p in batch.prompts]


def test_batches_cover_each_epoch_without_repeats():
    prompts = make_prompts(23)
    batcher = PromptBatcher(prompts, prompts_per_batch=5, num_generations=3, seed=7)
    assert batcher.batches_per_epoch == 4
    epochs = []
    for epoch in range(3):
        batches = [next(batcher) for _ in range(4)]
        assert {b.epoch for b in batches} == {epoch}
        seen = [i for b in batches for i in ids_of(b)]
        assert len(set(seen)) == 20, "a prompt was repeated within an epoch"
        epochs.append(seen)
    assert epochs[0] != epochs[1] != epochs[2]


def test_batches_depend_only_on_the_seed():
    prompts = make_prompts(23)
    first = [ids_of(b) for b, _ in zip(PromptBatcher(prompts, 5, 3, seed=7), range(8))]
    again = [ids_of(b) for b, _ in zip(PromptBatcher(prompts, 5, 3, seed=7), range(8))]
    other = [ids_of(b) for b, _ in zip(PromptBatcher(prompts, 5, 3, seed=8), range(8))]
    assert first == again and first != other


@pytest.mark.parametrize("stop_after", [1, 3, 4, 9])  # mid-epoch, end of epoch, next epoch
def test_resume_continues_with_the_exact_next_batch(stop_after):
    prompts = make_prompts(17)
    reference = PromptBatcher(prompts, 4, 2, seed=3)
    expected = [ids_of(next(reference)) for _ in range(stop_after + 6)]
    interrupted = PromptBatcher(prompts, 4, 2, seed=3)
    for _ in range(stop_after):
        next(interrupted)
    state = json.loads(json.dumps(interrupted.state_dict()))  # survives a checkpoint
    resumed = PromptBatcher(prompts, 4, 2, seed=3)
    resumed.load_state_dict(state)
    assert [ids_of(next(resumed)) for _ in range(6)] == expected[stop_after:]


def test_resume_refuses_other_data_or_settings():
    state = PromptBatcher(make_prompts(17), 4, 2, seed=3).state_dict()
    with pytest.raises(ValueError, match="saved fingerprint"):
        PromptBatcher(make_prompts(16) + make_prompts(18)[17:], 4, 2, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="saved seed 3 differs from 4"):
        PromptBatcher(make_prompts(17), 4, 2, seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match="saved prompts_per_batch"):
        PromptBatcher(make_prompts(17), 5, 2, seed=3).load_state_dict(state)


def test_batch_columns_repeat_each_prompt_g_times_and_truncate_left():
    batcher = PromptBatcher(make_prompts(10), 3, 4, seed=0, max_prompt_length=4)
    batch = next(batcher)
    columns = batch.columns()
    assert set(columns) == {"id", "problem", "answer", "prompt"}  # no solutions in this data
    for name, values in columns.items():
        assert len(values) == 12
        assert values == [v for v in getattr_column(batch, name) for _ in range(4)]
    assert batch.prompt_ids == [list(p.token_ids[-4:]) for p in batch.prompts]
    assert batch.num_truncated == sum(len(p.token_ids) > 4 for p in batch.prompts)


def getattr_column(batch, name):
    if name == "prompt":
        return [p.text for p in batch.prompts]
    return [getattr(p.example, name) for p in batch.prompts]


def test_batcher_rejects_too_few_prompts():
    with pytest.raises(ValueError, match="3 prompts cannot fill a batch of 4"):
        PromptBatcher(make_prompts(3), 4, 2, seed=0)


def test_double_bos_gives_the_papers_prompt_tokens():
    """The chat template writes BOS; TRL and lighteval then tokenised its text with special tokens,
    so the paper's model saw BOS twice. data.double_bos reproduces that; the default does not."""
    tokenizer = load_tokenizer()
    example = Example(id="0", problem="What is $1+1$?", answer="2")
    single = encode_prompts([example], tokenizer)[0].token_ids
    double = encode_prompts([example], tokenizer, double_bos=True)[0].token_ids
    bos = tokenizer.bos_token_id
    assert single[0] == bos and single[1] != bos
    assert double[:2] == (bos, bos) and double[1:] == single


def test_trl_order_is_the_papers_prompt_order_and_resumes():
    """data.order trl: each step's prompts are the next chunk of torch.randperm(n) drawn from one
    generator seeded with the run's seed, incomplete chunks dropped, a new draw each epoch: what
    TRL 0.16's RepeatRandomSampler yields (written out here from its definition)."""
    import torch

    prompts = [Prompt(Example(id=str(i), problem=f"p{i}", answer="1"), f"p{i}", (i + 1,)) for i in range(10)]
    generator = torch.Generator().manual_seed(42)
    expected = []
    for _ in range(3):  # epochs
        order = torch.randperm(10, generator=generator).tolist()
        expected += [order[i:i + 3] for i in range(0, 10, 3) if len(order[i:i + 3]) == 3]
    batcher = PromptBatcher(prompts, 3, 6, seed=42, order="trl")
    got = [[int(p.example.id) for p in batcher.next_batch().prompts] for _ in range(9)]
    assert got == expected
    resumed = PromptBatcher(prompts, 3, 6, seed=42, order="trl")
    first = PromptBatcher(prompts, 3, 6, seed=42, order="trl")
    for _ in range(4):
        first.next_batch()
    resumed.load_state_dict(first.state_dict())
    assert [int(p.example.id) for p in resumed.next_batch().prompts] == expected[4]
    assert PromptBatcher(prompts, 3, 6, seed=42).next_batch().prompts != tuple(prompts[i] for i in expected[0])
