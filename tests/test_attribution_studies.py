"""Planted-truth studies of the feature attribution on real Whisper tiny.en SAE features (issue 17; slow).

The demo's stimuli and simulator (``_attribution_study``): 8 subjects hear the 5 parts
of the story; the SAE features of layers 1-4 keep their real correlations. Scoring
rule: a reported feature is correct when it is planted or its EEG-rate trajectory
correlates with a planted one at |r| >= 0.8 over all stimuli.

- 10 datasets, each planting a different set of 3 layer-3 features (plus the envelope
  response), seeds 1000-1009: recall >= 0.9 and precision >= 0.9 over all reports,
  at most one false report per dataset on average in the layers with nothing planted.
  The paper protocol's precision on the same datasets is reported beside it.
- 20 null datasets (nothing planted, the envelope response present), seeds
  2000-2019: at most 2 with any reported feature (family-wise error <= 0.1), and the
  envelope TRF peaks within one sample of the planted response at its channel. These
  EEG respond to the envelope only, so they also show that SAE features correlating
  with the envelope are not reported.
"""

import json

import numpy as np
import pytest

from _attribution_study import (
    PLANTED_LAYER,
    SFREQ,
    planted_sets,
    protocol_reports,
    score_reported,
    simulate_study,
)
from sae_eeg.alignment import acoustic_trfs, attribute_features
from sae_eeg.eeg import planted_acoustic_peak

pytestmark = pytest.mark.slow

N_PLANTED, N_NULL = 10, 20
N_NULL_PROTOCOL = 3          # null datasets the paper protocol also runs on


def _attribute(demo, study):
    return attribute_features(study.runs, demo.features, demo.acoustic, sfreq=SFREQ, ch_names=study.ch_names,
                              feature_info=demo.feature_info)


@pytest.fixture(scope="module")
def planted_results(demo_sae_features):
    demo = demo_sae_features
    results = []
    for i, planted in enumerate(planted_sets(demo, N_PLANTED, seed=0)):
        study = simulate_study(demo, planted=planted, seed=1000 + i)
        tracked = _attribute(demo, study).tracked
        results.append({"planted": planted, "attribution": score_reported(demo, tracked, planted),
                        "protocol": score_reported(demo, protocol_reports(demo, study), planted)})
    return results


def test_planted_features_found_with_precision(planted_results):
    found = sum(len(r["attribution"]["found"]) for r in planted_results)
    n_planted = sum(len(r["planted"]) for r in planted_results)
    reported = sum(r["attribution"]["n_reported"] for r in planted_results)
    correct = sum(r["attribution"]["n_correct"] for r in planted_results)
    other_layers = sum(n for r in planted_results for layer, n in r["attribution"]["false_by_layer"].items()
                       if layer != PLANTED_LAYER)
    proto_reported = sum(r["protocol"]["n_reported"] for r in planted_results)
    proto_correct = sum(r["protocol"]["n_correct"] for r in planted_results)
    summary = {"recall": found / n_planted, "precision": correct / max(reported, 1),
               "false_other_layers_per_dataset": other_layers / len(planted_results),
               "protocol_precision": proto_correct / max(proto_reported, 1),
               "protocol_recall": sum(len(r["protocol"]["found"]) for r in planted_results) / n_planted}
    print("planted study:", json.dumps(summary))
    assert summary["recall"] >= 0.9 and summary["precision"] >= 0.9, summary
    assert summary["false_other_layers_per_dataset"] <= 1.0, summary
    assert summary["protocol_precision"] < 0.5 < summary["precision"]     # what the attribution fixes


@pytest.fixture(scope="module")
def null_results(demo_sae_features):
    demo = demo_sae_features
    results = []
    for i in range(N_NULL):
        study = simulate_study(demo, planted=[], seed=2000 + i)
        channel, latency = planted_acoustic_peak(study.truth, sfreq=SFREQ)
        peaks = acoustic_trfs(study.runs, demo.acoustic, sfreq=SFREQ, ch_names=study.ch_names, spaces=["envelope"],
                              channel=channel, n_boot=200, random_state=i).peaks
        group = peaks[peaks.subject == "group"].iloc[0]
        tracked = _attribute(demo, study).tracked
        results.append({"reported": list(zip(tracked.layer, tracked.feature)), "expected_latency": latency,
                        "latency": float(group.latency), "latency_ci": (group.latency_low, group.latency_high),
                        "protocol": len(protocol_reports(demo, study)) if i < N_NULL_PROTOCOL else None})
    return results


def test_null_datasets_report_nothing(null_results):
    with_reports = [r["reported"] for r in null_results if r["reported"]]
    print("null study: datasets with a report:", len(with_reports), "of", len(null_results), with_reports)
    assert len(with_reports) <= 2


def test_envelope_trf_peak_recovered(null_results):
    errors = [abs(r["latency"] - r["expected_latency"]) * 1e3 for r in null_results]
    print(f"null study: envelope peak latency error max {max(errors):.1f} ms, mean {np.mean(errors):.1f} ms "
          f"(one sample {1e3 / SFREQ:.1f} ms)")
    off = [(r["latency"], r["expected_latency"]) for r in null_results
           if abs(r["latency"] - r["expected_latency"]) > 1 / SFREQ + 1e-9]
    assert not off, off


def test_envelope_followers_flagged_by_the_protocol_only(null_results):
    """EEG responding to the envelope only: the univariate protocol flags SAE features, the attribution none."""
    with_protocol = [r for r in null_results if r["protocol"] is not None]
    print("null study: protocol flags", [r["protocol"] for r in with_protocol], "features")
    assert all(r["protocol"] >= 10 for r in with_protocol)
    assert sum(bool(r["reported"]) for r in with_protocol) <= 1
