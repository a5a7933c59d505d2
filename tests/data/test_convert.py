"""to_trl / to_hf_dataset: the row shapes TRL 1.x trainers and the standard evaluation take."""

from __future__ import annotations

import json

import pytest
from kaizen_runner.data import (
    ChatRecord,
    DataError,
    DataFormat,
    ImageRef,
    Message,
    Reason,
    load_records,
    to_hf_dataset,
    to_trl,
)
from kaizen_runner.data.convert import split_image_tokens

from .fixtures_gen import (
    ALPACA_RECORDS,
    CORPUS_RECORDS,
    PREFERENCE_RECORDS,
    SHAREGPT_RECORDS,
    cut_jpeg,
    write_dataset,
)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


def test_alpaca_sft_is_conversational_prompt_completion():
    rows = list(to_trl(ALPACA_RECORDS, "alpaca", "sft"))
    assert rows[0] == {
        "prompt": [user("Translate to French\nGood morning")],
        "completion": [assistant("Bonjour")],
    }
    assert rows[1]["prompt"] == [system("Be brief."), user("Say hi")]
    assert rows[2]["prompt"] == [
        user("First?"),
        assistant("Yes."),
        user("Second?"),
        assistant("No."),
        user("And then?"),
    ]


def test_sharegpt_sft_is_messages_with_mapped_roles_and_tools():
    rows = list(to_trl(SHAREGPT_RECORDS, "sharegpt", "sft"))
    assert rows[0] == {"messages": [user("Hi"), assistant("Hello!")], "tools": None}
    assert rows[1]["messages"][0] == system("Be kind.")
    assert [m["role"] for m in rows[1]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert rows[2]["messages"][0] == system("Answer in one word.")
    assert json.loads(rows[3]["tools"]) == [{"name": "get_weather", "parameters": {"type": "object"}}]


def test_preference_dpo_rows():
    rows = list(to_trl(PREFERENCE_RECORDS, "preference", "dpo"))
    assert rows[0] == {"prompt": [user("2+2?")], "chosen": [assistant("4")], "rejected": [assistant("5")]}
    assert rows[1]["prompt"][0] == system("You are a poet.") and rows[1]["prompt"][-1] == user("Another")


def test_corpus_pretrain_rows():
    assert [row["text"] for row in to_trl(CORPUS_RECORDS, "corpus", "pretrain")] == [
        r.text for r in CORPUS_RECORDS
    ]


def test_eval_rows_split_off_the_last_answer():
    [alpaca] = list(to_trl(ALPACA_RECORDS[:1], "alpaca", "eval"))
    assert alpaca == {"prompt": [user("Translate to French\nGood morning")], "reference": "Bonjour"}
    chat = list(to_trl(SHAREGPT_RECORDS, "sharegpt", "eval"))[1]
    assert (
        chat["prompt"] == [system("Be kind."), user("Q1"), assistant("A1"), user("Q2")]
        and chat["reference"] == "A2"
    )
    pair = list(to_trl(PREFERENCE_RECORDS, "preference", "eval"))[0]
    assert pair == {"prompt": [user("2+2?")], "reference": "4"}


@pytest.mark.parametrize(
    ("fmt", "task"),
    [
        ("corpus", "sft"),
        ("alpaca", "dpo"),
        ("sharegpt", "pretrain"),
        ("preference", "sft"),
        ("corpus", "eval"),
    ],
)
def test_formats_a_task_cannot_use(fmt, task):
    with pytest.raises(DataError) as caught:
        to_trl([], fmt, task)
    assert caught.value.reason is Reason.WRONG_TASK


def test_unknown_task():
    with pytest.raises(DataError, match="unknown task 'ppo'"):
        to_trl([], "sharegpt", "ppo")


def test_dpo_on_sharegpt_needs_pairs():
    with pytest.raises(DataError, match="record 0: dpo needs 'chosen' and 'rejected'"):
        list(to_trl(SHAREGPT_RECORDS, "sharegpt", "dpo"))


def test_a_row_that_fails_in_a_dataset_is_still_a_data_error(tmp_path):
    """`datasets` wraps what a generator raises in DatasetGenerationError; the record's error comes out."""
    with pytest.raises(DataError, match="record 0: dpo needs 'chosen' and 'rejected'"):
        to_hf_dataset(to_trl(SHAREGPT_RECORDS, "sharegpt", "dpo"), cache_dir=str(tmp_path))


def test_an_image_that_does_not_decode_names_its_record():
    record = ChatRecord(
        7,
        (Message("user", "<image>What is it?"), Message("assistant", "A circle.")),
        images=(ImageRef("images/cut.jpg", data=cut_jpeg()),),
    )
    with pytest.raises(DataError, match=r"record 7: image 0 \('images/cut.jpg'\) cannot be decoded") as bad:
        list(to_trl([record], "sharegpt_image", "sft"))
    assert bad.value.reason is Reason.NOT_AN_IMAGE


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("<image>What?", [{"type": "image"}, {"type": "text", "text": "What?"}]),
        (
            "a <image> b <image>",
            [
                {"type": "text", "text": "a "},
                {"type": "image"},
                {"type": "text", "text": " b "},
                {"type": "image"},
            ],
        ),
        ("<image><image>", [{"type": "image"}, {"type": "image"}]),
        ("no images", [{"type": "text", "text": "no images"}]),
    ],
)
def test_split_image_tokens_keeps_order(text, parts):
    assert split_image_tokens(text) == parts


def test_image_rows_carry_parts_and_pil_images_in_token_order(tmp_path):
    with load_records(write_dataset(tmp_path, DataFormat.SHAREGPT_IMAGE, "zip"), "sharegpt_image") as result:
        sft = list(to_trl(result.records, "sharegpt_image", "sft"))
        dpo_records = [r for r in result.records if r.is_pair]
        dpo = list(to_trl(dpo_records, "sharegpt_image", "dpo"))
    compare = sft[1]
    assert compare["messages"][0]["content"] == [
        {"type": "text", "text": "Compare "},
        {"type": "image"},
        {"type": "text", "text": " with "},
        {"type": "image"},
        {"type": "text", "text": "."},
    ]
    assert compare["messages"][1]["content"] == [
        {"type": "text", "text": "The first is red, the second blue."}
    ]
    red, blue = compare["images"]
    assert red.getpixel((0, 0)) == (255, 0, 0) and blue.getpixel((4, 4))[2] > 200
    assert sft[3]["images"] == []
    assert dpo[0]["prompt"][0]["content"][-1] == {"type": "image"}
    assert dpo[0]["chosen"] == [{"role": "assistant", "content": [{"type": "text", "text": "Red."}]}]


def test_hf_dataset_of_image_rows_decodes_images(tmp_path):
    with load_records(
        write_dataset(tmp_path, DataFormat.SHAREGPT_IMAGE, "parquet"), "sharegpt_image"
    ) as result:
        rows = to_trl([r for r in result.records if not r.is_pair], "sharegpt_image", "sft")
        dataset = to_hf_dataset(rows, cache_dir=str(tmp_path / "cache"))
    assert dataset.num_rows == 4
    assert [len(images) for images in dataset["images"]] == [1, 2, 1, 0]
    assert dataset[1]["images"][0].convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert dataset[1]["messages"][0]["content"][1] == {"type": "image"}


def test_hf_dataset_keeps_tools_when_only_later_rows_have_them(tmp_path):
    dataset = to_hf_dataset(to_trl(SHAREGPT_RECORDS, "sharegpt", "sft"), cache_dir=str(tmp_path))
    assert dataset["tools"][:3] == [None, None, None] and "get_weather" in dataset["tools"][3]
