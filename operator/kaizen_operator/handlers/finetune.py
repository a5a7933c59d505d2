"""kopf handlers for FineTunePipeline."""

from kaizen_api.kinds import FINETUNE_PIPELINE

from kaizen_operator.handlers.admit import register_admission

register_admission(FINETUNE_PIPELINE)
