"""kopf handlers for EvalJob."""

from kaizen_api.kinds import EVAL_JOB

from kaizen_operator.handlers.admit import register_admission

register_admission(EVAL_JOB)
