"""The feature browser's data: planted top clips, TRF summaries, neighbours, tables, atomic writes."""

import base64
import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import soundfile
import torch

from sae_eeg.audio import Audio
from sae_eeg.browse import FeatureTable, write_feature_browser
from sae_eeg.browse.clips import excerpt_starts
from sae_eeg.browse.features import nearest_features
from sae_eeg.browse.responses import trf_summaries
from sae_eeg.errors import InputError
from sae_eeg.sae import BatchTopKSAE
from sae_eeg.trajectories import FeatureTrajectory

FRAME_RATE = 50.0
N_FEATURES = 10
DEAD = 9
# (stimulus, time s, activation) of feature 0's planted peaks; clips of 1 s hold one peak each
PEAKS = [("a", 0.51, 5.0), ("b", 0.75, 4.0), ("a", 1.73, 3.0)]
SUBJECTS = ["s1", "s2", "s3", "s4"]
LAGS = np.array([0.0, 0.05, 0.1, 0.15, 0.2])
CHANNELS_ALL = ["Fp1", "AF3", "F3", "C3", "Cz", "Pz", "Oz", "P4"]


def _unpack(packed):
    q = np.frombuffer(base64.b64decode(packed["q"]), np.uint8)
    return packed["lo"] + (packed["hi"] - packed["lo"]) * q / 255.0


def _data(path):
    """The arguments a data script passes to the page."""
    text = path.read_text()
    return json.loads("[" + text[text.index("(") + 1:text.rindex(")")] + "]")


def _codes(rng, n_frames, stimulus):
    codes = np.zeros((n_frames, N_FEATURES), np.float32)
    for f in range(1, DEAD):  # background features: a few random bursts, small values
        on = rng.choice(n_frames, size=6, replace=False)
        codes[on, f] = rng.uniform(0.1, 1.0, on.size)
    times = 0.01 + np.arange(n_frames) / FRAME_RATE
    for stim, t, value in PEAKS:
        if stim == stimulus:
            k = int(np.argmin(np.abs(times - t)))
            codes[k, 0] = value
            codes[k - 1, 0] = codes[k + 1, 0] = value / 2  # a bump, largest at the planted time
    return FeatureTrajectory.from_dense(codes, sfreq=FRAME_RATE, tmin=0.01)


def _trf_table(rng):
    rows = []
    for s, subject in enumerate(SUBJECTS):
        for feature, gain in ((0, 2.0), (1, 0.3)):
            for channel, chan_gain in (("Pz", 1.0), ("Cz", 0.2)):
                for split in ("dev", "test"):
                    w = gain * chan_gain * np.sin(np.pi * LAGS / 0.2) + 0.1 * rng.standard_normal(LAGS.size)
                    rows += [{"subject": subject, "feature": feature, "channel": channel, "split": split,
                              "lag": lag, "weight": v} for lag, v in zip(LAGS, w)]
    return pd.DataFrame(rows)


def _all_channel_trf(rng):
    topo = np.linspace(-1, 1, len(CHANNELS_ALL))
    return pd.DataFrame([{"subject": s, "feature": 0, "channel": c, "split": "all", "lag": lag,
                          "weight": topo[j] * np.exp(-((lag - 0.1) / 0.05) ** 2) + 0.01 * rng.standard_normal()}
                         for s in SUBJECTS for j, c in enumerate(CHANNELS_ALL) for lag in LAGS])


def _protocol_table():
    rows = []
    for feature in range(8):
        for channel, pval in (("Pz", 0.01 * (feature + 1)), ("Cz", 0.5)):
            rows.append({"layer": 3, "feature": feature, "channel": channel, "t": 10.0 - feature, "pval": pval,
                         "significant": pval < 0.05})
    rows.append({"layer": 4, "feature": 9, "channel": "Pz", "t": 1.0, "pval": 0.001, "significant": True})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    sfreq = 16000.0
    audio = {name: Audio((0.1 * rng.standard_normal(int(dur * sfreq))).astype(np.float32), sfreq)
             for name, dur in (("a", 3.0), ("b", 2.2))}
    trajectories = {name: _codes(rng, int(len(a.waveform) / sfreq * FRAME_RATE), name) for name, a in audio.items()}
    sae = BatchTopKSAE(8, N_FEATURES, 2, random_state=0)
    protocol = FeatureTable("protocol", _protocol_table(), columns={"t": "EEG effect (t)", "pval": "p",
                                                                    "significant": "sig.", "channel": "channel"},
                            best="pval")
    labels = FeatureTable("class", pd.DataFrame({"feature": np.arange(N_FEATURES),
                                                  "label": ["speech"] * 5 + ["music"] * 5}))
    tsne = pd.DataFrame({"feature": np.arange(N_FEATURES), "x": rng.normal(size=N_FEATURES),
                         "y": rng.normal(size=N_FEATURES)})
    return {"trajectories": trajectories, "audio": audio, "sae": sae, "tables": [protocol, labels],
            "trf": _trf_table(rng), "all_channel_trf": _all_channel_trf(rng), "tsne": tsne, "layer": 3}


@pytest.fixture(scope="module")
def site(inputs, tmp_path_factory):
    return write_feature_browser(tmp_path_factory.mktemp("browse") / "layer_3", montage="biosemi64",
                                 clip_length=1.0, n_clips=4, n_neighbours=3, block_size=4, **inputs)


def test_index_lists_every_feature_with_its_table_columns(site):
    (index,) = _data(site.folder / "data" / "index.js")
    assert index["n_features"] == N_FEATURES == len(index["rows"])
    keys = [c["key"] for c in index["columns"]]
    assert keys == ["feature", "rate", "active", "max_activation", "protocol.t", "protocol.pval",
                    "protocol.significant", "protocol.channel", "class.label"]
    rows = {r[0]: dict(zip(keys, r)) for r in index["rows"]}
    assert [rows[f]["feature"] for f in range(N_FEATURES)] == list(range(N_FEATURES))
    # the best row (smallest p) represents each feature; rows of layer 4 are not this layer's
    assert rows[2]["protocol.pval"] == 0.03 and rows[2]["protocol.channel"] == "Pz"
    assert rows[DEAD]["protocol.pval"] is None and rows[8]["protocol.t"] is None
    assert rows[0]["max_activation"] == 5.0 and rows[DEAD]["rate"] == 0.0
    assert index["colour"] == "class.label" and index["tsne"][3] is not None
    assert [c["type"] for c in index["columns"]][4:] == ["number", "number", "bool", "text", "text"]


def test_top_clips_are_the_planted_peaks_inside_their_excerpts(site):
    _, block = _data(site.folder / "data" / "features_00000.js")
    clips = block["features"]["0"]["clips"]
    assert [(block["excerpts"][str(c["excerpt"])]["stimulus"], c["peak"], c["max"]) for c in clips] == [
        (stim, pytest.approx(t, abs=0.011), value) for stim, t, value in PEAKS]
    for clip in clips:
        ex = block["excerpts"][str(clip["excerpt"])]
        assert ex["start"] <= clip["peak"] < ex["start"] + ex["duration"]
        info = soundfile.info(str(site.folder / ex["src"]))
        assert info.format == "OGG" and info.duration == pytest.approx(ex["duration"], abs=0.01)
        act = _unpack(clip["act"])
        assert act.size == ex["n"] and act.max() == pytest.approx(clip["max"], rel=1e-3)
        peak_time = ex["start"] + ex["t0"] + np.argmax(act) * ex["dt"]
        assert peak_time == pytest.approx(clip["peak"], abs=1e-6)
        env = _unpack(ex["env"]).reshape(-1, 2)
        assert env.shape == (ex["n"], 2) and np.all(env[:, 0] <= env[:, 1] + 1e-3)
    dead = _data(site.folder / "data" / "features_00002.js")[1]["features"][str(DEAD)]
    assert dead["clips"] == [] and dead["rf"] is None


def test_excerpt_starts_put_each_peak_in_the_middle_half():
    rng = np.random.default_rng(1)
    length = 2.0
    durations = rng.uniform(0.5, 20, 2000)
    peaks = rng.uniform(0, 1, 2000) * durations
    start = excerpt_starts(peaks, durations, clip_length=length) * length / 2
    end = np.minimum(start + length, durations)
    assert np.all((start <= peaks) & (peaks < end))
    inner = (start > 0) & (start + length < durations)
    offset = peaks[inner] - start[inner]
    assert inner.sum() > 1000 and np.all((offset >= length / 4 - 1e-9) & (offset <= 3 * length / 4 + 1e-9))


def test_trf_summaries_are_the_t_interval_of_the_subject_mean(inputs):
    trf = inputs["trf"]
    summaries = trf_summaries(trf)
    assert sorted(summaries) == [0, 1]
    assert summaries[0]["strongest"] == "Pz" and summaries[1]["strongest"] == "Pz"  # the planted stronger channel
    assert summaries[0]["chosen"] is None and trf_summaries(trf, channel="Cz")[0]["chosen"] == "Cz"
    assert trf_summaries(trf, channel="Oz")[0]["chosen"] is None  # a channel the feature lacks
    assert summaries[0]["lags"] == {"start": 0.0, "step": pytest.approx(0.05), "n": LAGS.size}
    for split in ("dev", "test"):
        got = summaries[0]["channels"]["Cz"][split]
        assert got["n"] == len(SUBJECTS)
        values = _unpack(got["values"]).reshape(3, LAGS.size)
        w = trf[(trf.feature == 0) & (trf.channel == "Cz") & (trf.split == split)].pivot(
            index="subject", columns="lag", values="weight").to_numpy()
        mean = w.mean(axis=0)
        lo, hi = scipy.stats.t.interval(0.95, len(SUBJECTS) - 1, loc=mean, scale=scipy.stats.sem(w, axis=0))
        tol = (values.max() - values.min()) / 500 + 1e-3 * np.abs(values).max()
        np.testing.assert_allclose(values, np.stack([mean, lo, hi]), atol=tol)


def test_trf_summaries_refuse_channels_with_other_lags(inputs):
    trf = inputs["trf"]
    ragged = trf[~((trf.channel == "Cz") & (trf.lag == 0.2) & (trf.feature == 1))]
    with pytest.raises(InputError, match=r"feature 1, channel 'Pz', split 'dev' has 5 lags, another of its "
                                         r"channels or splits 4"):
        trf_summaries(ragged)
    with pytest.raises(InputError, match=r"trf lacks the column\(s\) \['weight'\]"):
        trf_summaries(trf.drop(columns="weight"))


def test_nearest_features_are_the_largest_decoder_cosines():
    sae = BatchTopKSAE(16, 50, 4, random_state=3)
    with torch.no_grad():
        sae.decoder.weight[:, 7] = sae.decoder.weight[:, 3]  # a duplicate: each is the other's nearest, cosine 1
    ids, cosines = nearest_features(sae, 5)
    W = sae.decoder.weight.detach().double().numpy().T
    U = W / np.linalg.norm(W, axis=1, keepdims=True)
    cos = U @ U.T
    np.fill_diagonal(cos, -np.inf)
    expected = np.argsort(-cos, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(cosines, np.take_along_axis(cos, expected, axis=1))
    assert ids[3, 0] == 7 and ids[7, 0] == 3 and cosines[3, 0] == pytest.approx(1.0)


def test_feature_pages_hold_every_element(site):
    blocks = sorted((site.folder / "data").glob("features_*.js"))
    assert len(blocks) == 3  # 10 features, 4 per file
    features = {}
    for path in blocks:
        _, data = _data(path)
        features.update(data["features"])
        assert data["columns"]["protocol"] == ["channel", "t", "pval", "significant"]
    assert sorted(map(int, features)) == list(range(N_FEATURES))
    zero = features["0"]
    assert zero["trf"]["strongest"] == "Pz" and zero["topo"] == "topo/feature_0.png"
    assert (site.folder / zero["topo"]).stat().st_size > 5000
    assert zero["rf"] is not None and len(_unpack(zero["rf"])) > 0
    assert [row[0] for row in zero["tables"]["protocol"]] == ["Pz", "Cz"]  # best (smallest p) first
    assert zero["tables"]["class"] == [["speech"]]
    assert len(zero["neighbours"]) == 3 and features["5"]["trf"] is None and features["5"]["topo"] is None


def test_sizes_are_reported_and_the_site_is_self_contained(site):
    files = [p for p in site.folder.rglob("*") if p.is_file()]
    assert site.n_files == len(files) and site.total_bytes == sum(p.stat().st_size for p in files)
    assert set(site.sizes) == {"audio", "data", "images", "pages"} and site.sizes["audio"] > 0
    for page in ("index.html", "feature.html"):
        text = (site.folder / page).read_text()
        assert "http:" not in text and "https:" not in text  # nothing from the network
        for ref in ("assets/browser.js", "data/index.js"):
            assert ref in text and (site.folder / ref).is_file()
    record = json.loads((site.folder / "site.json").read_text())
    assert record["n_features"] == N_FEATURES and record["sizes"]["audio"] == site.sizes["audio"]


def test_failed_build_keeps_the_previous_site(site, inputs):
    before = (site.folder / "data" / "index.js").read_text()
    with pytest.raises(InputError, match=r"Invalid value for 'montage': got 'biosemi46'.*Did you mean 'biosemi64'"):
        write_feature_browser(site.folder, montage="biosemi46", clip_length=1.0, **inputs)  # fails half-way
    assert (site.folder / "data" / "index.js").read_text() == before
    assert [p.name for p in site.folder.parent.iterdir()] == [site.folder.name]  # no temporary folder left


@pytest.mark.parametrize(("change", "match"), [
    (lambda kw: kw["audio"].pop("b"), r"audio has no entry for the stimuli \['b'\]"),
    (lambda kw: kw.update(sae=BatchTopKSAE(8, 12, 2, random_state=0)),
     r"sae has 12 features but the trajectories 10"),
    (lambda kw: kw["trajectories"].update(b=FeatureTrajectory.from_dense(np.ones((5, N_FEATURES)), sfreq=100.0)),
     r"trajectories\['b'\] has sfreq 100.0 Hz, trajectories\['a'\] 50.0 Hz"),
    (lambda kw: kw.update(tables=[kw["tables"][0], kw["tables"][0]]), r"Two tables are named 'protocol'"),
    (lambda kw: kw.update(colour_by="label"), r"colour_by='label' is not an index column"),
    (lambda kw: kw.update(trf=kw["trf"].drop(columns="lag")), r"trf lacks the column\(s\) \['lag'\]"),
])
def test_input_errors_name_the_argument(inputs, tmp_path, change, match):
    kwargs = {**inputs, "audio": dict(inputs["audio"]), "trajectories": dict(inputs["trajectories"])}
    change(kwargs)
    with pytest.raises(InputError, match=match):
        write_feature_browser(tmp_path / "site", clip_length=1.0, **kwargs)
    assert not (tmp_path / "site").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(name="2x", table=pd.DataFrame({"feature": [1]})), r"FeatureTable.name must be a letter.*got '2x'"),
    (dict(name="t", table=pd.DataFrame({"unit": [1]})),
     r"'t': the table has no 'feature' column; columns present: \['unit'\]"),
    (dict(name="t", table=pd.DataFrame({"feature": [1]}), best="p"), r"columns \['p'\] are not in the table"),
    (dict(name="t", table=pd.DataFrame({"feature": [1.5]})), r"'feature' must hold integer ids, got dtype float64"),
])
def test_feature_table_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        FeatureTable(**kwargs)
