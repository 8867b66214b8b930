"""Tasks and data sets: built-in tasks by name or user data by path, as deterministic normalised splits.

Adding a built-in task is one module here with a function decorated by ``register_task(name)``,
imported below so it registers.
"""

from edgekd.data import basic_motions, digits, fashion_mnist  # noqa: F401  (register built-ins)
from edgekd.data.core import MIN_CALIB_SAMPLES, RawData, Splits, TaskSpec
from edgekd.data.registry import TASKS, Task, get_spec, load_task, register_task, task_names
from edgekd.text import task as _text_task  # noqa: F401  (text-embedding, issue 16)

__all__ = [
    "MIN_CALIB_SAMPLES",
    "TASKS",
    "RawData",
    "Splits",
    "Task",
    "TaskSpec",
    "get_spec",
    "load_task",
    "register_task",
    "task_names",
]
