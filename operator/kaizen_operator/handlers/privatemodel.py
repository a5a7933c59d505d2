"""kopf handlers for PrivateModel."""

from kaizen_api.kinds import PRIVATE_MODEL

from kaizen_operator.handlers.admit import register_admission

register_admission(PRIVATE_MODEL)
