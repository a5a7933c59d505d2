"""sharegpt_image records: images are resolved in the zip (or embedded in parquet) and must be PNG/JPEG.

Each bad record is record 1 after a valid record 0, so the report must point at exactly that record.
"""

from __future__ import annotations

import json

import pytest
from kaizen_runner.data import Limits, Reason, load_records

from .fixtures_gen import BLUE_JPG, RED_PNG, cut_jpeg, image_bytes, parquet_bytes, write_zip
from .validation_helpers import gpt, human, only_issue


def image_row(text="<image>What is it?", images=("images/red.png",), key="images", **extra):
    row = {
        "conversations": [human(text), gpt("A square.")],
        key: list(images) if key == "images" else images[0],
    }
    row.update(extra)
    return row


IMAGE_CASES = [
    ("two-tokens-one-image", image_row("<image> vs <image>"), Reason.IMAGE_COUNT_MISMATCH, "images"),
    ("token-without-image", image_row(images=()), Reason.IMAGE_COUNT_MISMATCH, "images"),
    ("image-without-token", image_row("What is it?"), Reason.IMAGE_COUNT_MISMATCH, "images"),
    ("missing-file", image_row(images=("images/green.png",)), Reason.MISSING_IMAGE, "images[0]"),
    ("escaping-path", image_row(images=("../red.png",)), Reason.MISSING_IMAGE, "images[0]"),
    ("text-posing-as-png", image_row(images=("images/fake.png",)), Reason.NOT_AN_IMAGE, "images[0]"),
    ("gif-extension", image_row(images=("images/anim.gif",)), Reason.NOT_AN_IMAGE, "images[0]"),
    ("gif-inside-png-name", image_row(images=("images/gif.png",)), Reason.NOT_AN_IMAGE, "images[0]"),
    ("jpeg-cut-short", image_row(images=("images/cut.jpg",)), Reason.NOT_AN_IMAGE, "images[0]"),
    ("number-as-image", image_row(images=(7,)), Reason.WRONG_TYPE, "images[0]"),
    (
        "single-image-path-missing",
        image_row(images=("nope.jpg",), key="image_path"),
        Reason.MISSING_IMAGE,
        "image_path[0]",
    ),
    (
        "token-in-chosen",
        {
            "conversations": [human("<image> which?")],
            "chosen": gpt("<image>"),
            "rejected": gpt("no"),
            "images": ["images/red.png"],
        },
        Reason.IMAGE_COUNT_MISMATCH,
        "chosen",
    ),
]


@pytest.mark.parametrize(
    ("bad", "reason", "field"), [c[1:] for c in IMAGE_CASES], ids=[c[0] for c in IMAGE_CASES]
)
def test_image_problems_in_a_zip(tmp_path, bad, reason, field):
    members = {
        "train.json": json.dumps([image_row(), bad]).encode(),
        "images/red.png": RED_PNG,
        "images/blue.jpg": BLUE_JPG,
        "images/fake.png": b"this is text, not a PNG",
        "images/anim.gif": image_bytes((0, 255, 0), "GIF"),
        "images/gif.png": image_bytes((0, 255, 0), "GIF"),
        "images/cut.jpg": cut_jpeg(),
    }
    issue = only_issue(write_zip(tmp_path / "images.zip", members), "sharegpt_image")
    assert (issue.index, issue.reason, issue.field) == (1, reason, field)


def test_a_dpo_dataset_skips_a_conversation_that_is_no_preference_pair(tmp_path):
    """sharegpt_image mixes pairs and plain conversations; for DPO only pairs can be converted."""
    pair = {
        "conversations": [human("<image>Which colour?")],
        "chosen": gpt("Red."),
        "rejected": gpt("Blue."),
        "images": ["images/red.png"],
    }
    members = {"train.json": json.dumps([pair, image_row()]).encode(), "images/red.png": RED_PNG}
    path = write_zip(tmp_path / "dpo.zip", members)
    issue = only_issue(path, "sharegpt_image", task="dpo")
    assert (issue.index, issue.reason, issue.field) == (1, Reason.MISSING_FIELD, "chosen")
    assert "DPO trains on preference pairs" in issue.message


def test_an_image_over_the_size_limit_is_not_read(tmp_path):
    members = {"train.json": json.dumps([image_row(), image_row(images=("images/blue.jpg",))]).encode()}
    members.update({"images/red.png": RED_PNG, "images/blue.jpg": BLUE_JPG})
    assert len(RED_PNG) < len(BLUE_JPG)
    path = write_zip(tmp_path / "images.zip", members)
    issue = only_issue(path, "sharegpt_image", limits=Limits(max_image_bytes=len(RED_PNG)))
    assert (issue.index, issue.reason, issue.field) == (1, Reason.IMAGE_TOO_LARGE, "images[0]")


def test_images_resolve_against_the_data_files_folder(tmp_path):
    members = {
        "set/train.json": json.dumps([image_row(images=("pics/red.png",))]).encode(),
        "set/pics/red.png": RED_PNG,
    }
    with load_records(write_zip(tmp_path / "nested.zip", members), "sharegpt_image") as result:
        [record] = list(result.records)
    assert record.images[0].member == "set/pics/red.png"


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ({"bytes": None, "path": "images/red.png"}, Reason.MISSING_IMAGE),
        ({"bytes": b"not an image", "path": "x.png"}, Reason.NOT_AN_IMAGE),
        ({"bytes": image_bytes((1, 2, 3), "GIF"), "path": "x.gif"}, Reason.NOT_AN_IMAGE),
    ],
    ids=["path-only", "garbage-bytes", "gif-bytes"],
)
def test_image_problems_in_parquet(tmp_path, image, reason):
    good = image_row(images=({"bytes": RED_PNG, "path": "red.png"},))
    path = tmp_path / "images.parquet"
    path.write_bytes(parquet_bytes([good, image_row(images=(image,))]))
    issue = only_issue(path, "sharegpt_image")
    assert (issue.index, issue.reason, issue.field) == (1, reason, "images[0]")
