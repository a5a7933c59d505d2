"""`kaizen-runner plan`: the CPU preflight of a training run (data, tokens, steps, GPU memory)."""
