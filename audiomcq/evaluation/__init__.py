"""Benchmark evaluation: tasks (official prediction formats and scoring) and the harness that runs them."""

from audiomcq.evaluation.harness import EvalConfig, evaluate_task, run_eval
from audiomcq.evaluation.tasks import TASKS, Task, get_task

__all__ = ["TASKS", "EvalConfig", "Task", "evaluate_task", "get_task", "run_eval"]
