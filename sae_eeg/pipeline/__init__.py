"""Per-subject and group orchestration: one task graph of content-addressed tasks, reports, the demo.

Modules, along the flow of a run:

* :mod:`~sae_eeg.pipeline.config`: the typed, nested :class:`PipelineConfig`, checked whole at load;
* :mod:`~sae_eeg.pipeline.outputs`: claiming an output folder, paths kept inside it;
* :mod:`~sae_eeg.pipeline.stages`: the stages, declared once, and the task graph they make;
* :mod:`~sae_eeg.pipeline.fingerprints`: content fingerprints of the files tasks read;
* :mod:`~sae_eeg.pipeline.graph`: task keys, stamps, serial and Dask execution, one-line errors;
* :mod:`~sae_eeg.pipeline.steps`, :mod:`~sae_eeg.pipeline.evaluate`: the task functions;
* :mod:`~sae_eeg.pipeline.analyses`: the per-subject and group alignment analyses on loaded runs;
* :mod:`~sae_eeg.pipeline.io`: run files, time series and tables; :mod:`~sae_eeg.pipeline.resources`: the
  output layout and the config's backbone, SAEs and inputs;
* :mod:`~sae_eeg.pipeline.reporting`, :mod:`~sae_eeg.pipeline.browser` (the feature browser of an output
  folder), :mod:`~sae_eeg.pipeline.demo`.
"""

from .browser import build_browser
from .config import PipelineConfig, load_pipeline_config
from .graph import Task, TaskGraph, TaskReport, run_graph, task_key
from .outputs import claim_output_dir, output_path
from .reporting import make_figures, make_report
from .stages import ANALYSES, EXTRACT, STAGES, Stage, build_graph, run_pipeline, run_stages

__all__ = [
    "ANALYSES", "EXTRACT", "PipelineConfig", "STAGES", "Stage", "Task", "TaskGraph", "TaskReport", "build_browser",
    "build_graph", "claim_output_dir", "load_pipeline_config", "make_figures", "make_report", "output_path",
    "run_graph", "run_pipeline", "run_stages", "task_key",
]
