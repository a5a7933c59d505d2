"""Training: pre-training, SFT and DPO with TRL, LoRA or full, single process, DDP or DeepSpeed.

Entry points: `kaizen-runner train` (cli.py) and `run_training` (run.py).
"""
