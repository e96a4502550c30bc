"""Per-subject and group orchestration: tasks, output folders, the demo."""

from .outputs import prepare_output_dir
from .tasks import Task, TaskReport, run_tasks

__all__ = ["Task", "TaskReport", "prepare_output_dir", "run_tasks"]
