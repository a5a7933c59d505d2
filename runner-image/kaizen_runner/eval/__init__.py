"""`kaizen-runner eval`: score a model (or given predictions) with the standard text-similarity metrics,
lm-evaluation-harness tasks, Nejumi Leaderboard 3 or VLMEvalKit tasks (see docs/evaluation.md)."""
