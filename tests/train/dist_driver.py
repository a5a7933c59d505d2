"""Run under torchrun by test_distributed_training: trains each given config in turn in this process and
writes, per rank, the final step, loss history, a hash of the full (gathered) weights and, with a
validation set, the logged train and eval prediction counts beside the label tokens the training set
and the whole validation set really hold.

usage: torchrun --nproc_per_node 2 dist_driver.py <result-dir> <work-dir> <config.json>...
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path


def weights_hash(model) -> str:  # type: ignore[no-untyped-def]
    """sha256 over every parameter, gathered first when ZeRO-3 has partitioned them."""
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    params = sorted(model.named_parameters())
    gather = nullcontext()
    if is_deepspeed_zero3_enabled():
        import deepspeed

        gather = deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None)
    digest = hashlib.sha256()
    with gather:
        for name, param in params:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def label_tokens(dataset) -> int:  # type: ignore[no-untyped-def]
    """Next-token label positions of a tokenized SFT dataset: what one pass over it predicts."""
    return sum(sum(label != -100 for label in row["labels"][1:]) for row in dataset)


def main() -> None:
    from kaizen_api.runconfig import TrainRunConfig
    from kaizen_runner.train.distributed import shut_down
    from kaizen_runner.train.run import run_training

    results, work = Path(sys.argv[1]), Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    for config_path in sys.argv[3:]:
        cfg = TrainRunConfig.model_validate(json.loads(Path(config_path).read_text()))
        result = run_training(cfg, work_dir=work)
        trainer = result.trainer
        record = {
            "global_step": result.global_step,
            "world_size": trainer.args.world_size,
            "distributed_type": str(trainer.accelerator.distributed_type),
            "losses": [e["loss"] for e in result.log_history if "loss" in e],
            "weights": weights_hash(
                trainer.model_wrapped if hasattr(trainer, "model_wrapped") else trainer.model
            ),
            "version": result.version_uri,
        }
        if trainer.eval_dataset is not None:
            record["eval_records"] = len(trainer.eval_dataset)
            record["eval_label_tokens"] = label_tokens(trainer.eval_dataset)
            record["train_label_tokens"] = label_tokens(trainer.train_dataset)
            for key in ("train_num_predictions", "eval_num_predictions"):
                record[key] = [e[key] for e in result.log_history if key in e]
        (results / f"{cfg.run_name}.rank{rank}.json").write_text(json.dumps(record))
    shut_down()  # as the runner's CLI does after a run


if __name__ == "__main__":
    main()
