"""How much memory evaluation may take: the fixed defaults and the least a user may give (`--eval-memory`).

The defaults are fixed, never read from the free memory at start, so reruns evaluate in the same chunks and
the rounding of the summed losses is the same run after run (`engine.budget` sizes the chunks).
"""

DEFAULT_EVAL_MEMORY_MB = 256  # a CPU's budget
DEFAULT_GPU_EVAL_MEMORY_MB = 1024  # a GPU's budget: the whole cohort evaluates at once there (grouped kernels)
MIN_EVAL_MEMORY_MB = 16
