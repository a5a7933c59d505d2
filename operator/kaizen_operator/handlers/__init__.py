"""kopf handlers: thin I/O around pure functions, one module per kind.

Importing this package registers every handler (`kopf run -m kaizen_operator.handlers`).
"""

from kaizen_operator.handlers import evaljob, finetune, privatemodel, startup, watchguard

watchguard.install()

__all__ = ["evaljob", "finetune", "privatemodel", "startup", "watchguard"]
