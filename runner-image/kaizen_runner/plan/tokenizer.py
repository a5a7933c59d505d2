"""The base model's tokenizer and shape, staged without its weights.

Only tokenizer files, `config.json` and processor configs are fetched (a few MB, whatever the
model's size), from the hub, an S3 prefix (a catalog mirror or a PrivateModel version, whose
`model/` folder holds them) or a mounted folder. The parameter count, when the operator did not
pass it, is counted from `config.json` by building the model on the meta device (no memory).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kaizen_api.runconfig import RunLocation

from kaizen_runner.plan.memory import ModelShape
from kaizen_runner.train.errors import RunnerError
from kaizen_runner.train.hub import hub_snapshot
from kaizen_runner.train.store import open_store
from kaizen_runner.train.templates import ensure_chat_template

log = logging.getLogger(__name__)

TOKENIZER_FILES = frozenset(
    {
        "added_tokens.json",
        "chat_template.jinja",
        "chat_template.json",
        "config.json",
        "generation_config.json",
        "merges.txt",
        "preprocessor_config.json",
        "processor_config.json",
        "special_tokens_map.json",
        "spiece.model",
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
        "vocab.json",
        "vocab.txt",
    }
)
_MODEL_DIRS = ("", "model")  # a PrivateModel version keeps full weights and tokenizer under model/


def _wanted(key: str) -> bool:
    folder, _, name = key.rpartition("/")
    return folder in _MODEL_DIRS and (name in TOKENIZER_FILES or name.endswith(".tiktoken"))


def _tokenizer_folder(root: Path, uri: str) -> Path:
    for folder in (root, root / "model"):
        if (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
            return folder
    raise RunnerError(
        f"base model {uri} has no tokenizer files (tokenizer.json or tokenizer_config.json)",
        reason="ModelInvalid",
    )


def stage_tokenizer(location: RunLocation, cache_dir: Path) -> Path:
    """A local folder with the base model's tokenizer files and config.json."""
    uri = location.uri
    if uri.startswith("hf://"):
        patterns = [*TOKENIZER_FILES, "*.tiktoken"]
        snapshot = hub_snapshot(uri.removeprefix("hf://"), patterns, what="the tokenizer of base model")
        return _tokenizer_folder(snapshot, uri)
    if uri.startswith("s3://"):
        store = open_store(location)
        target = cache_dir / "tokenizer"
        for key in sorted(k for k in store.list_files() if _wanted(k)):
            data = store.get_bytes(key)
            if data is not None:
                (target / key).parent.mkdir(parents=True, exist_ok=True)
                (target / key).write_bytes(data)
        return _tokenizer_folder(target, uri)
    if "://" in uri and not uri.startswith("file://"):
        raise RunnerError(
            f"base model {uri}: not a model source; use s3://, hf:// or a folder", reason="ModelInvalid"
        )
    path = Path(uri.removeprefix("file://"))
    if not path.is_dir():
        raise RunnerError(f"base model folder {path} does not exist", reason="ModelInvalid")
    return _tokenizer_folder(path, uri)


def load_tokenizer(folder: Path) -> Any:
    """The text tokenizer (a VLM's processor brings the same files), with a chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ensure_chat_template(tokenizer)
    return tokenizer


def _count_parameters(folder: Path, vision: bool) -> int | None:
    try:
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

        config = AutoConfig.from_pretrained(folder)
        auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
        with init_empty_weights():
            model = auto.from_config(config)
        model.tie_weights()  # a tied lm_head is the embedding, counted once
        return int(sum(p.numel() for p in model.parameters()))
    except Exception as err:  # an unknown architecture: the plan goes on without a memory estimate
        log.warning("cannot count the parameters of %s: %s", folder, err)
        return None


def model_shape(folder: Path, parameters: int | None) -> tuple[ModelShape | None, bool]:
    """(shape, is a VLM) from config.json; the shape is None when the size cannot be known."""
    path = folder / "config.json"
    config: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    vision = "vision_config" in config
    text = config.get("text_config") or config
    parameters = parameters or (_count_parameters(folder, vision) if config else None)
    if not parameters:
        return None, vision
    shape = ModelShape(
        parameters=parameters,
        hidden_size=text.get("hidden_size"),
        layers=text.get("num_hidden_layers"),
        vocab_size=text.get("vocab_size"),
    )
    return shape, vision
