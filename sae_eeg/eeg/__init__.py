"""EEG data layer: readers (MNE, BIDS, CND), preprocessing, alignment, simulator."""

from .align import AlignedRun, align_run, find_marker, find_run_markers, load_aligned_run, stimulus_duration
from .preprocess import PreprocessConfig, detect_bad_channels, preprocess, save_preprocessed
from .readers import (
    CND_ONSET_ANNOTATION, READERS, CNDRecording, apply_montage, check_finite, infer_format,
    match_channel_names, read_cnd, read_cnd_stim, read_lalor_mat, read_manifest_feature, read_raw, read_run,
    read_stimulus_feature, recording_files, stimulus_feature_problems,
)
from .simulate import FORMATS, SimulatedDataset, planted_acoustic_peak, random_features, simulate_dataset
from .summary import ManifestSummary, check_manifest

__all__ = [
    "AlignedRun", "align_run", "find_marker", "find_run_markers", "load_aligned_run", "stimulus_duration",
    "PreprocessConfig", "detect_bad_channels", "preprocess", "save_preprocessed", "READERS", "CNDRecording",
    "apply_montage", "check_finite", "infer_format", "read_cnd", "read_cnd_stim",
    "read_lalor_mat", "read_raw", "read_run", "CND_ONSET_ANNOTATION", "match_channel_names",
    "read_manifest_feature", "read_stimulus_feature", "recording_files", "stimulus_feature_problems",
    "FORMATS", "SimulatedDataset", "planted_acoustic_peak", "random_features", "simulate_dataset",
    "ManifestSummary", "check_manifest",
]
