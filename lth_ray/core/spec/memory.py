"""How much memory evaluation may take: the CPU's fixed default and the least a user may give (`--eval-memory`).

The default is fixed so reruns evaluate in the same chunks and stay bitwise (`engine.budget` sizes the chunks).
"""

DEFAULT_EVAL_MEMORY_MB = 256
MIN_EVAL_MEMORY_MB = 16
