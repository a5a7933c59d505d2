"""The failure classification: which errors the Job retries (infrastructure) and which it fails at once."""

from __future__ import annotations

import errno
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kaizen_api.results import EXIT_INFRA_ERROR, EXIT_USER_ERROR
from kaizen_runner.data import DataError, Reason
from kaizen_runner.train.failures import classify, exit_code


@pytest.mark.parametrize(
    ("reason", "expected", "code"),
    [
        (Reason.SOURCE_UNREACHABLE, "StorageError", EXIT_INFRA_ERROR),
        (Reason.BAD_SOURCE, "ConfigInvalid", EXIT_USER_ERROR),
        (Reason.NO_USABLE_RECORDS, "DataInvalid", EXIT_USER_ERROR),
    ],
)
def test_data_errors(reason: Reason, expected: str, code: int) -> None:
    failure, message = classify(DataError(reason, "s3:///train.json: names no bucket"))
    assert (failure, exit_code(failure), message) == (expected, code, "s3:///train.json: names no bucket")


def test_a_module_the_image_lacks_is_not_retried_and_is_named() -> None:
    """Every pod of the Job runs the same image: a retry would fail the same way."""
    with pytest.raises(ImportError) as caught:
        import kaizen_no_such_module.sub  # noqa: F401
    reason, message = classify(caught.value)
    assert (reason, exit_code(reason)) == ("ConfigInvalid", EXIT_USER_ERROR)
    assert message.startswith("the runner image cannot import the Python module kaizen_no_such_module (")
    assert "ModuleNotFoundError: No module named 'kaizen_no_such_module'" in message


def test_a_missing_optional_extra_names_its_setting_as_the_preflight_check_does() -> None:
    """transformers' own ImportError for flash-attn (a bare one, no module name) and a failed import of
    bitsandbytes say what `check_optional_packages` says: the setting, and that the image lacks it."""
    from kaizen_api.finetune import RuntimeParameters
    from kaizen_runner.train.errors import RunnerError
    from kaizen_runner.train.models import check_optional_packages
    from transformers import AutoModelForCausalLM, LlamaConfig

    tiny = LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64
    )
    with pytest.raises(ImportError) as caught:
        AutoModelForCausalLM.from_config(tiny, attn_implementation="flash_attention_2")
    reason, message = classify(caught.value)
    assert (reason, exit_code(reason)) == ("ConfigInvalid", EXIT_USER_ERROR)
    with pytest.raises(RunnerError) as checked:
        check_optional_packages(RuntimeParameters(flash_attention_v2=True))
    assert (
        message.split(" (")[0]
        == checked.value.message.split(" (")[0]
        == ("flashAttentionV2 needs the flash_attn package")
    )
    assert "FlashAttention2" in message and "unset flashAttentionV2" in message
    reason, message = classify(ModuleNotFoundError("No module named 'bitsandbytes'", name="bitsandbytes"))
    assert reason == "ConfigInvalid" and message.startswith("quantizationBit needs the bitsandbytes package")


def _dataset_raising(err: Exception, tmp_path: Path) -> BaseException:
    """What `datasets` raises when a row generator fails with `err` (its DatasetGenerationError)."""
    from datasets import Dataset

    def rows() -> Iterator[dict[str, Any]]:
        yield {"text": "fine"}
        raise err

    with pytest.raises(Exception) as caught:
        Dataset.from_generator(rows, cache_dir=str(tmp_path))
    assert type(caught.value).__name__ == "DatasetGenerationError"
    return caught.value


def test_a_data_error_inside_a_datasets_wrapper_is_the_users(tmp_path: Path) -> None:
    error = DataError(Reason.NOT_AN_IMAGE, "record 3: image 0 cannot be decoded")
    assert classify(_dataset_raising(error, tmp_path)) == ("DataInvalid", error.message)


def test_a_full_disk_inside_a_datasets_wrapper_is_retried(tmp_path: Path) -> None:
    wrapped = _dataset_raising(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    reason, message = classify(wrapped)
    assert (reason, exit_code(reason)) == ("InfrastructureError", EXIT_INFRA_ERROR)
    assert "No space left on device" in message


def test_dpo_on_sharegpt_image_skips_a_plain_conversation(image_zip: Path, tmp_path: Path) -> None:
    """The fixture's conversations are no preference pairs: validation names them, no row fails later."""
    from kaizen_api.runconfig import RunDataset
    from kaizen_runner.train.data import DataPlan, load_dataset

    pair = {
        "conversations": [{"from": "human", "value": "<image>Which colour?"}],
        "chosen": {"from": "gpt", "value": "Red."},
        "rejected": {"from": "gpt", "value": "Blue."},
        "images": ["images/red.png"],
    }
    mixed = tmp_path / "mixed.zip"
    with zipfile.ZipFile(image_zip) as source, zipfile.ZipFile(mixed, "w") as target:
        for name in source.namelist():
            if name != "train.json":
                target.writestr(name, source.read(name))
        records = json.loads(source.read("train.json"))
        target.writestr("train.json", json.dumps([pair, *records]))
    dataset, report = load_dataset(RunDataset(uri=str(mixed), format="sharegpt_image"), DataPlan("dpo"))
    assert len(dataset) == 1 and report["skipped"] == len(records)
    assert report["examples"][0]["message"].startswith("record 1: 'chosen' and 'rejected' are missing")
