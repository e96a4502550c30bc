"""Per-subject and group orchestration: stages as resumable tasks, reports, the demo."""

from .config import PipelineConfig, load_pipeline_config
from .outputs import prepare_output_dir
from .reporting import make_figures, make_report
from .stages import EXTRACT, STAGES, run_stages
from .tasks import Task, TaskReport, run_tasks

__all__ = [
    "EXTRACT", "PipelineConfig", "STAGES", "Task", "TaskReport", "load_pipeline_config", "make_figures",
    "make_report", "prepare_output_dir", "run_stages", "run_tasks",
]
