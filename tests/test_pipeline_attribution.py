"""The attribution and acoustic TRF stages of the pipeline (issue 17) on the small generated study.

The statistics themselves are tested on planted truth in ``test_alignment_attribution``
(fast) and ``test_attribution_studies`` (slow); here: the config section is checked at
load, the stages write their tables where the browser and the report read them, and
the tables do not depend on the number of threads.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from _pipeline_study import make_study

from sae_eeg.errors import ConfigError
from sae_eeg.pipeline import run_pipeline
from sae_eeg.pipeline.browser import feature_tables
from sae_eeg.pipeline.config import load_pipeline_config
from sae_eeg.pipeline.reporting import make_report

STAGES = ("acoustic_group", "attribution_features")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("attribution") / "study"
    cfg = make_study(root)
    report = run_pipeline(cfg, ("group", *STAGES))
    assert {"attribution", "attribution_features", "acoustic_group", "acoustic/01"} <= set(report.ran)
    return root, cfg


def _config(cfg, **alignment):
    return {**cfg, "alignment": {**cfg["alignment"], **alignment}}


def test_config_section_is_checked_at_load(study):
    _, cfg = study
    bad = _config(cfg, attribution={"layerz": [1], "level": 2, "correction": "fdr"},
                  acoustic={"peak_window": [0.2, 0.9], "spaces": ["onsets"]})
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(bad, check_files=False)
    text = str(err.value)
    for line in ("alignment.attribution.layerz: Extra inputs are not permitted",
                 "alignment.attribution.level: Input should be less than 1 (got 2)",
                 "alignment.attribution.correction: Input should be 'holm', 'fdr_bh', 'bonferroni' or 'none'",
                 "alignment.acoustic.spaces.0: Input should be 'envelope' or 'mel' (got 'onsets')"):
        assert line in text, text
    with pytest.raises(ConfigError, match=r"acoustic: peak_window \[0.2, 0.9\] is not an interval inside "
                                          r"tmin..tmax -0.1..0.3"):
        load_pipeline_config(_config(cfg, acoustic={"tmax": 0.3, "peak_window": [0.2, 0.9]}), check_files=False)
    with pytest.raises(ConfigError, match=r"alignment.attribution.layers \[3\] must be among the pipeline's "
                                          r"layers \[1, 2\]"):
        load_pipeline_config(_config(cfg, attribution={"layers": [3]}), check_files=False)


def test_tables_where_the_browser_and_the_report_read_them(study):
    _, cfg = study
    out = Path(cfg["output_dir"]) / "alignment"
    features = pd.read_parquet(out / "attribution" / "attribution_features.parquet")
    assert len(features) >= 1 and features.feature.dtype.kind == "i" and set(features.layer) <= {1, 2}
    for layer in (1, 2):
        rows = pd.read_parquet(out / f"layer_{layer}" / "group" / "attribution_features.parquet")
        pd.testing.assert_frame_equal(rows, features[features.layer == layer].reset_index(drop=True))
        names = [t.name for t in feature_tables(load_pipeline_config(cfg, check_files=False), layer)]
        assert ("attribution" in names) == (features.layer == layer).any()
    peaks = pd.read_parquet(out / "acoustic" / "group" / "acoustic_peaks.parquet")
    assert set(peaks.space) == {"envelope", "mel"} and set(peaks.subject) == {"group", "01", "02", "03"}
    group = peaks[peaks.subject == "group"]
    assert (group.latency_low <= group.latency).all() and (group.latency <= group.latency_high).all()
    subject = pd.read_parquet(out / "acoustic" / "subjects" / "02" / "acoustic_trfs.parquet")
    assert set(subject.subject) == {"02"} and set(subject.space) == {"envelope", "mel"}
    report = make_report(cfg).read_text()
    lead = report.index("Which SAE features does the EEG track beyond the acoustics?")
    assert lead < report.index("Acoustic TRFs") < report.index("The AudioSAE paper protocol: counts")
    assert "What they do not mean: the number of features the brain tracks" in report
    assert report.count("data:image/png;base64,") >= 4          # TRF and topography of the envelope and mel


def test_tables_identical_with_one_and_two_threads(study, tmp_path):
    """Every stage (activations, SAE features, per-subject, group, acoustic and attribution tables) run afresh
    in subprocesses with 1 and 2 threads: equal tables, bit for bit. (SAE training: test_sae_training.)"""
    root, cfg = study
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from sae_eeg.pipeline import run_pipeline
        cfg = json.loads(sys.argv[1])
        ran = run_pipeline(cfg, {("group", *STAGES)!r}).ran
        assert {{"encode/story1", "subject/01", "group", "attribution", "acoustic/01"}} <= set(ran), ran
    """))
    tables = {}
    for n in ("1", "2"):
        copy = tmp_path / n
        shutil.copytree(root, copy, symlinks=True, ignore=shutil.ignore_patterns("out"))   # the inputs
        other = json.loads(json.dumps(cfg).replace(str(root), str(copy)))
        env = {**os.environ, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}
        done = subprocess.run([sys.executable, str(script), json.dumps(other)], env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        out = Path(other["output_dir"]) / "alignment"
        tables[n] = {p.relative_to(out): pd.read_parquet(p) for p in sorted(out.glob("**/*.parquet"))}
    assert len(tables["1"]) >= 7 + 4 + 2 * 3 + 3 * 3 and tables["1"].keys() == tables["2"].keys()
    for name, frame in tables["1"].items():
        pd.testing.assert_frame_equal(frame, tables["2"][name], check_exact=True)


def test_score_reports_counts_planted_and_correlated_reports():
    """The rule: correct when planted, or correlating with a planted feature at |r| >= 0.8."""
    from sae_eeg.pipeline.demo import score_reports

    reported = pd.DataFrame({"layer": [3, 3, 2, 1], "feature": [5, 9, 40, 7]})
    abs_r = [[1.0, 0.1, 0.85, 0.2],          # planted 5: itself, and layer 2's feature 40 follows it
             [0.0, 0.3, 0.1, 0.79]]          # planted 6: not found (0.79 < 0.8)
    score = score_reports(reported, [5, 6], abs_r, planted_layer=3)
    assert score["found"] == {5} and score["n_correct"] == 2 and score["false_by_layer"] == {3: 1, 1: 1}
    assert score["recall"] == 0.5 and score["precision"] == 0.5
    empty = score_reports(reported.iloc[:0], [5], [[]], planted_layer=3)
    assert empty["recall"] == 0.0 and empty["precision"] == 1.0
