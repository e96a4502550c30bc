"""All-channel feature TRFs + cluster test: planted channels found, null data controlled."""

import mne
import numpy as np
import pytest
from _alignment_sim import SFREQ, make_study

from sae_eeg import stats
from sae_eeg.alignment.channels import CLUSTER_COLUMNS, feature_cluster_test
from sae_eeg.errors import InputError

NAMES = mne.channels.make_standard_montage("biosemi32").ch_names


@pytest.fixture(scope="module")
def adjacency():
    return stats.channel_adjacency("biosemi32")


def _neighbourhood(adjacency, centre="Cz", n=4):
    c = NAMES.index(centre)
    return [c] + list(np.nonzero(adjacency.toarray()[c])[0][: n - 1])


def test_cluster_test_finds_planted_channels(adjacency):
    chans = _neighbourhood(adjacency)
    data, _ = make_study(n_subjects=8, n_channels=32, n_features=4, planted=(0,), planted_channels=chans,
                         seed=5)
    res = feature_cluster_test(data, sfreq=SFREQ, ch_names=NAMES, adjacency=adjacency, tmax=0.4,
                               n_permutations=256, random_state=0, model="m", layer=2,
                               feature_ids=[10, 11, 12, 13])
    assert list(res.clusters.columns) == list(CLUSTER_COLUMNS)
    found = res.significant_channels(10)
    assert {NAMES[c] for c in chans} <= found
    assert len(found - {NAMES[c] for c in chans}) <= 3          # only a little spill to neighbours
    assert all(not res.significant_channels(f) for f in (11, 12, 13))
    assert res.coef.shape == (8, 32, 4, len(res.times)) and res.t_obs.shape == (4, len(res.times), 32)
    sig = res.clusters[res.clusters.significant]
    assert set(sig.sign) == {-1, 1}                                # N1 trough and P2 peak
    assert sig.tmin.min() <= 0.1 <= sig.tmax.max()


def _cluster_null_fwer(adjacency, n_datasets, seed0, n_features):
    hits = 0
    for k in range(n_datasets):
        data, _ = make_study(n_subjects=8, n_channels=32, n_runs=2, run_s=30.0, n_features=n_features,
                             planted=(), seed=seed0 + k)
        res = feature_cluster_test(data, sfreq=SFREQ, ch_names=NAMES, adjacency=adjacency, tmax=0.3,
                                   n_permutations=128, random_state=k)
        hits += bool(res.clusters.significant.any())
    return hits / n_datasets


def test_cluster_null_fwer_fast(adjacency):
    assert _cluster_null_fwer(adjacency, 3, 300, n_features=2) <= 1 / 3


@pytest.mark.slow
def test_cluster_null_fwer_full(adjacency):
    assert _cluster_null_fwer(adjacency, 20, 400, n_features=3) <= 3 / 20   # P(binom(20,.05) > 3) < 0.02


def test_cluster_bad_input(adjacency):
    data, _ = make_study(n_subjects=2, n_channels=32, n_runs=1, run_s=5.0, n_features=2, planted=())
    with pytest.raises(InputError, match=r"ch_names has 3 names but the EEG has 32"):
        feature_cluster_test(data, sfreq=SFREQ, ch_names=NAMES[:3], adjacency=adjacency)
    with pytest.raises(InputError, match=r"got 1 subject"):
        feature_cluster_test({"a": data["s01"]}, sfreq=SFREQ, ch_names=NAMES, adjacency=adjacency)
    with pytest.raises(InputError, match=r"adjacency has shape \(4, 4\).*\(32, 32\)"):
        feature_cluster_test(data, sfreq=SFREQ, ch_names=NAMES, adjacency=adjacency[:4, :4])
