"""The AudioSAE EEG protocol on plain arrays: planted features found, null data controlled."""

import numpy as np
import pytest
from _alignment_sim import SFREQ, bursty_features, make_study
from scipy import sparse

from sae_eeg.alignment import (
    FEATURE_COLUMNS,
    feature_max,
    firing_rates,
    paper_protocol,
    scale_max,
    select_features,
)
from sae_eeg.errors import InputError
from sae_eeg.trf import shared_stimulus_trfs, univariate_trfs


def test_shared_stimulus_trfs_equal_engine_per_group(rng):
    stimuli = [sparse.random(n, 7, density=0.1, format="csr", random_state=i) for i, n in enumerate([300, 257, 280])]
    eeg = {g: [rng.standard_normal((x.shape[0], 2)) for x in stimuli] for g in "abc"}
    # a and b heard the same three stimuli (solved together), c two of them (solved alone)
    groups = {"a": list(zip(stimuli, eeg["a"])), "b": list(zip(stimuli, eeg["b"])),
              "c": list(zip(stimuli[:2], eeg["c"][:2]))}
    for tmin, tmax in [(0, 0.1), (-0.05, 0.2), (-0.1, -0.02)]:
        fits = shared_stimulus_trfs(groups, tmin, tmax, 100.0, alpha=3.0, chunk_size=3)
        for g, runs in groups.items():
            ref = univariate_trfs([x for x, _ in runs], [y for _, y in runs], tmin, tmax, 100.0, alpha=3.0)
            np.testing.assert_allclose(fits[g].coef_, ref.coef_, atol=1e-10)
            np.testing.assert_allclose(fits[g].intercept_, ref.intercept_, atol=1e-10)
            np.testing.assert_array_equal(fits[g].lags_, ref.lags_)


def test_firing_rates_and_selection(rng):
    x = np.zeros((100, 3))
    x[[10, 11, 12, 50], 0] = 1.0        # two onsets, four active samples
    x[::2, 1] = 0.5                      # 50 onsets
    rates_on = firing_rates([x, x.copy()], sfreq=10.0)   # the duplicate counts once
    np.testing.assert_allclose(rates_on, [2 / 10, 50 / 10, 0.0])
    np.testing.assert_allclose(firing_rates([x], sfreq=10.0, count="samples"), [4 / 10, 5.0, 0.0])
    feats = [bursty_features(rng, 2000, 30, rate_hz=np.r_[np.full(20, 3.0), np.full(10, 0.1)], sfreq=50.0)]
    cols = select_features(feats, sfreq=50.0, min_rate=1.0, n_features=None)
    np.testing.assert_array_equal(cols, np.arange(20))
    a = select_features(feats, sfreq=50.0, n_features=5, random_state=1)
    b = select_features(feats, sfreq=50.0, n_features=5, random_state=1)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 5 and set(a) <= set(range(20))
    with pytest.raises(InputError, match=r"'count'.*'onset'.*Did you mean 'onsets'"):
        firing_rates(feats, sfreq=50.0, count="onset")


def test_scale_max(rng):
    x = sparse.random(50, 4, density=0.3, format="csr", random_state=0)
    y = sparse.random(50, 4, density=0.3, format="csr", random_state=1)
    m = feature_max([x, y])
    scaled = [scale_max(x, m), scale_max(y, m)]
    np.testing.assert_allclose(np.max([s.toarray().max(axis=0) for s in scaled], axis=0), (m > 0) * 1.0)
    assert sparse.issparse(scaled[0])


def test_protocol_finds_planted_features_and_lags():
    data, truth = make_study(n_subjects=8, n_features=20, planted=(0, 1, 2), seed=1)
    res = paper_protocol(data, sfreq=SFREQ, channels=[0, 4], min_rate=0.5, random_state=0,
                         model="sim", layer=3)
    assert list(res.features.columns) == list(FEATURE_COLUMNS)
    sig = res.features[res.features.significant]
    # planted features: found on the planted channel with both signs, at the kernel's extrema
    on_ch0 = sig[sig.channel == "0"]
    assert set(on_ch0.feature) == {0, 1, 2}
    for sign, lag in (("negative", truth["lag_min"]), ("positive", truth["lag_max"])):
        lags = on_ch0[on_ch0.sign == sign].lag.to_numpy()
        assert np.all(np.abs(lags - lag) <= 1 / SFREQ + 1e-12), (sign, lags, lag)
    # nothing on the channel without signal, and no unplanted feature
    assert sig[sig.channel == "4"].empty
    assert set(sig.feature) <= {0, 1, 2}
    row = res.summary.iloc[0]
    assert row["n_significant"] == 3 and row["fraction_significant"] == pytest.approx(3 / 20)
    assert (row["model"], row["layer"]) == ("sim", 3)
    # one row per (subject, feature, channel, sign) with that subject's test value
    assert len(res.subjects) == 8 * 20 * 2 * 2
    assert res.coef_dev.shape == (8, 2, 20, len(res.times))
    tidy = res.trf_frame("test")
    assert len(tidy) == res.coef_test.size


def test_protocol_subject_lag_selection():
    data, truth = make_study(n_subjects=6, n_features=8, planted=(3,), seed=2)
    res = paper_protocol(data, sfreq=SFREQ, channels=0, min_rate=0.5, lag_selection="subject")
    sig = res.features[res.features.significant]
    assert set(sig.feature) == {3}
    assert res.features.lag.isna().all()
    lags = res.subjects.query("feature == 3 and sign == 'negative'").lag
    assert np.median(np.abs(lags - truth["lag_min"])) <= 1 / SFREQ


def test_protocol_selects_and_samples_features():
    data, _ = make_study(n_subjects=3, n_features=12, rate_hz=np.r_[np.full(8, 2.0), np.full(4, 0.2)],
                         planted=(), seed=3)
    res = paper_protocol(data, sfreq=SFREQ, channels=0, n_features=5, random_state=4,
                         feature_ids=np.arange(100, 112))
    ids = np.unique(res.features.feature)
    assert len(ids) == 5 and set(ids) <= set(range(100, 108))


def _null_fwer(n_datasets, seed0, n_subjects=6, n_features=20):
    hits = 0
    for k in range(n_datasets):
        data, _ = make_study(n_subjects=n_subjects, n_features=n_features, planted=(), seed=seed0 + k,
                             run_s=30.0)
        res = paper_protocol(data, sfreq=SFREQ, channels=[0, 1], min_rate=0.5)
        hits += bool(res.features.significant.any())
    return hits / n_datasets


def test_protocol_null_fwer_fast():
    # 5 null datasets x 80 tests each: no family-wise false positive expected (P(>=2) < 0.03)
    assert _null_fwer(5, 100) <= 1 / 5


@pytest.mark.slow
def test_protocol_null_fwer_full():
    rate = _null_fwer(40, 200, n_subjects=10, n_features=50)
    assert rate <= 0.1  # binomial(40, 0.05): P(count > 4) < 0.05


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"channels": "Cz"}, r"'channels'.*'Cz'.*allowed values are '0'"),
    ({"lag_selection": "groups"}, r"'lag_selection'.*'groups'.*Did you mean 'group'"),
    ({"correction": "hol"}, r"'correction'.*'hol'"),
    ({"n_dev_runs": 5}, r"needs at least 6"),
    ({"alpha": 0.0}, r"alpha must be in \(0, inf\], got 0.0"),
])
def test_protocol_bad_args(kwargs, match):
    data, _ = make_study(n_subjects=2, n_runs=3, n_features=3, run_s=5.0, planted=())
    kwargs = {"ch_names": [str(i) for i in range(6)], "channels": "0", **kwargs}
    with pytest.raises(InputError, match=match):
        paper_protocol(data, sfreq=SFREQ, min_rate=0.0, **kwargs)


def test_protocol_bad_data():
    data, _ = make_study(n_subjects=2, n_runs=3, n_features=3, run_s=5.0, planted=())
    eeg, feats = data["s01"][1]
    bad = {**data, "s01": [data["s01"][0], (eeg[:-3], feats), data["s01"][2]]}
    with pytest.raises(InputError, match=r"data\['s01'\]\[1\]: eeg has 317 samples but features have 320"):
        paper_protocol(bad, sfreq=SFREQ, channels=0, min_rate=0.0)
    with pytest.raises(InputError, match=r"got 1 subject\(s\), need >= 2"):
        paper_protocol({"s01": data["s01"]}, sfreq=SFREQ, channels=0, min_rate=0.0)
    nan = eeg.copy()
    nan[3, 0] = np.nan
    with pytest.raises(InputError, match=r"data\['s02'\]\[0\]: eeg holds NaN"):
        paper_protocol({**data, "s02": [(nan, feats)] + data["s02"][1:]}, sfreq=SFREQ, channels=0, min_rate=0.0)
    with pytest.raises(InputError, match=r"No feature fires at least 100"):
        paper_protocol(data, sfreq=SFREQ, channels=0, min_rate=100.0)
