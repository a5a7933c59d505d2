"""Generated test data: the same records of every format, written as every file type it accepts.

Each format has raw rows (as a user would write them, mixing the spellings SPEC §2 allows) and
the normalized records they must load as. Writers put the rows in any file type under tmp_path.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from kaizen_runner.data import AlpacaRecord, ChatRecord, DataFormat, Message, Record, TextRecord
from PIL import Image

Row = dict[str, Any]


def image_bytes(color: tuple[int, int, int], kind: str = "PNG", size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format=kind)
    return buffer.getvalue()


RED_PNG = image_bytes((255, 0, 0))
BLUE_JPG = image_bytes((0, 0, 255), "JPEG")
IMAGES = {"images/red.png": RED_PNG, "images/blue.jpg": BLUE_JPG}


def cut_jpeg() -> bytes:
    """The first half of a 256x256 JPEG: its header reads (`verify` passes), its pixels do not decode."""
    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


ALPACA_ROWS: list[Row] = [
    {"instruction": "Translate to French", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "Say hi", "input": "", "output": "Hi!", "system": "Be brief."},
    {
        "instruction": "And then?",
        "input": "",
        "output": "Done.",
        "history": [["First?", "Yes."], ["Second?", "No."]],
    },
    {"instruction": "日本語で答えてください", "input": "", "output": "はい、わかりました。"},
]
ALPACA_RECORDS: list[Record] = [
    AlpacaRecord(0, "Translate to French", "Bonjour", "Good morning"),
    AlpacaRecord(1, "Say hi", "Hi!", "", "Be brief."),
    AlpacaRecord(2, "And then?", "Done.", "", None, (("First?", "Yes."), ("Second?", "No."))),
    AlpacaRecord(3, "日本語で答えてください", "はい、わかりました。"),
]

SHAREGPT_ROWS: list[Row] = [
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
    {
        "conversations": [
            {"from": "system", "value": "Be kind."},
            {"from": "human", "value": "Q1"},
            {"from": "gpt", "value": "A1"},
            {"from": "user", "value": "Q2"},
            {"from": "assistant", "value": "A2"},
        ]
    },
    {
        "messages": [{"role": "user", "content": "Hey"}, {"role": "assistant", "content": "Yo"}],
        "system": "Answer in one word.",
    },
    {
        "conversations": [{"from": "human", "value": "Weather?"}, {"from": "gpt", "value": "Sunny."}],
        "tools": '[{"name": "get_weather", "parameters": {"type": "object"}}]',
    },
]
SHAREGPT_RECORDS: list[Record] = [
    ChatRecord(0, (Message("user", "Hi"), Message("assistant", "Hello!"))),
    ChatRecord(
        1,
        (
            Message("user", "Q1"),
            Message("assistant", "A1"),
            Message("user", "Q2"),
            Message("assistant", "A2"),
        ),
        "Be kind.",
    ),
    ChatRecord(2, (Message("user", "Hey"), Message("assistant", "Yo")), "Answer in one word."),
    ChatRecord(
        3,
        (Message("user", "Weather?"), Message("assistant", "Sunny.")),
        tools=[{"name": "get_weather", "parameters": {"type": "object"}}],
    ),
]

PREFERENCE_ROWS: list[Row] = [
    {
        "conversations": [{"from": "human", "value": "2+2?"}],
        "chosen": {"from": "gpt", "value": "4"},
        "rejected": {"from": "gpt", "value": "5"},
    },
    {
        "conversations": [
            {"from": "system", "value": "You are a poet."},
            {"from": "human", "value": "A line about rain"},
            {"from": "gpt", "value": "Rain taps the roof."},
            {"from": "human", "value": "Another"},
        ],
        "chosen": {"from": "gpt", "value": "Grey skies weep softly."},
        "rejected": {"from": "gpt", "value": "It rains."},
    },
]
PREFERENCE_RECORDS: list[Record] = [
    ChatRecord(
        0, (Message("user", "2+2?"),), chosen=Message("assistant", "4"), rejected=Message("assistant", "5")
    ),
    ChatRecord(
        1,
        (
            Message("user", "A line about rain"),
            Message("assistant", "Rain taps the roof."),
            Message("user", "Another"),
        ),
        "You are a poet.",
        chosen=Message("assistant", "Grey skies weep softly."),
        rejected=Message("assistant", "It rains."),
    ),
]

CORPUS_ROWS: list[Row] = [
    {"text": "Film colorization is any process that adds color to black-and-white images."},
    {"text": "Ünïcödé text, 中文, and emoji 🙂 survive."},
    {"text": "The last passage is cut mid-sentence, as in the samples"},
]
CORPUS_RECORDS: list[Record] = [TextRecord(i, row["text"]) for i, row in enumerate(CORPUS_ROWS)]

# Image rows name images by path (zip); `embed_images` turns them into parquet's embedded bytes.
IMAGE_ROWS: list[Row] = [
    {
        "messages": [
            {"role": "user", "content": "<image>What colour is this?"},
            {"role": "assistant", "content": "Red."},
        ],
        "images": ["images/red.png"],
    },
    {
        "conversations": [
            {"from": "human", "value": "Compare <image> with <image>."},
            {"from": "gpt", "value": "The first is red, the second blue."},
        ],
        "images": ["images/red.png", "images/blue.jpg"],
    },
    {
        "conversations": [
            {"from": "human", "value": "<image>Describe."},
            {"from": "gpt", "value": "A blue square."},
        ],
        "image": "images/blue.jpg",
    },
    {
        "conversations": [{"from": "human", "value": "No image here."}, {"from": "gpt", "value": "Fine."}],
    },
    {
        "conversations": [{"from": "human", "value": "Which colour? <image>"}],
        "chosen": {"from": "gpt", "value": "Red."},
        "rejected": {"from": "gpt", "value": "Green."},
        "images": ["images/red.png"],
    },
]
# (index, turns, chosen, rejected, image names, image bytes) — ImageRef locations differ by file type.
IMAGE_EXPECTED = [
    (
        0,
        (Message("user", "<image>What colour is this?"), Message("assistant", "Red.")),
        None,
        None,
        [RED_PNG],
    ),
    (
        1,
        (
            Message("user", "Compare <image> with <image>."),
            Message("assistant", "The first is red, the second blue."),
        ),
        None,
        None,
        [RED_PNG, BLUE_JPG],
    ),
    (
        2,
        (Message("user", "<image>Describe."), Message("assistant", "A blue square.")),
        None,
        None,
        [BLUE_JPG],
    ),
    (3, (Message("user", "No image here."), Message("assistant", "Fine.")), None, None, []),
    (
        4,
        (Message("user", "Which colour? <image>"),),
        Message("assistant", "Red."),
        Message("assistant", "Green."),
        [RED_PNG],
    ),
]

ROWS: dict[DataFormat, list[Row]] = {
    DataFormat.ALPACA: ALPACA_ROWS,
    DataFormat.SHAREGPT: SHAREGPT_ROWS,
    DataFormat.PREFERENCE: PREFERENCE_ROWS,
    DataFormat.CORPUS: CORPUS_ROWS,
    DataFormat.SHAREGPT_IMAGE: IMAGE_ROWS,
}
RECORDS: dict[DataFormat, list[Record]] = {
    DataFormat.ALPACA: ALPACA_RECORDS,
    DataFormat.SHAREGPT: SHAREGPT_RECORDS,
    DataFormat.PREFERENCE: PREFERENCE_RECORDS,
    DataFormat.CORPUS: CORPUS_RECORDS,
}


def embed_images(rows: list[Row]) -> list[Row]:
    """Parquet rows: every image as a {bytes, path} struct (the Hugging Face Image feature's layout)."""
    embedded = []
    for row in rows:
        row = dict(row)
        for key in ("images", "image"):
            if key in row:
                paths = row[key] if isinstance(row[key], list) else [row[key]]
                structs = [{"bytes": IMAGES[p], "path": p} for p in paths]
                row[key] = structs if isinstance(row[key], list) else structs[0]
        embedded.append(row)
    return embedded


def json_bytes(rows: list[Any]) -> bytes:
    return json.dumps(rows, ensure_ascii=False, indent=1).encode()


def jsonl_bytes(rows: list[Any]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def csv_bytes(rows: list[Row]) -> bytes:
    """Alpaca CSV: a header of every column; `history` cells hold JSON."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if k == "history" else v for k, v in row.items()})
    return out.getvalue().encode()


def txt_bytes(rows: list[Row]) -> bytes:
    return "".join(row["text"] + "\n" for row in rows).encode()


def parquet_bytes(rows: list[Row]) -> bytes:
    """Every row gets every column (null where absent): pyarrow takes the columns from the first row."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]), sink)
    return sink.getvalue()


ENCODERS = {
    "json": json_bytes,
    "jsonl": jsonl_bytes,
    "csv": csv_bytes,
    "txt": txt_bytes,
    "parquet": parquet_bytes,
}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_dataset(tmp_path: Path, fmt: DataFormat, file_type: str, inner: str = "json") -> Path:
    """Write the format's rows as `file_type`; a zip holds them as `train.<inner>` (plus images)."""
    rows = ROWS[fmt]
    if file_type == "parquet" and fmt is DataFormat.SHAREGPT_IMAGE:
        rows = embed_images(rows)
    if file_type == "zip":
        members = {f"train.{inner}": ENCODERS[inner](rows)}
        if fmt is DataFormat.SHAREGPT_IMAGE:
            members.update(IMAGES)
        return write_zip(tmp_path / f"{fmt.value}.zip", members)
    path = tmp_path / f"{fmt.value}.{file_type}"
    path.write_bytes(ENCODERS["jsonl" if file_type == "jsonlines" else file_type](rows))
    return path
