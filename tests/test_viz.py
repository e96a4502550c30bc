"""Figures: each one writes PNG + SVG from small synthetic tables; bad tables fail clearly."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from sae_eeg.errors import InputError
from sae_eeg.viz import (
    FigureFiles,
    peak_lags,
    plot_consistency,
    plot_erasure_curves,
    plot_layer_r,
    plot_mel_receptive_fields,
    plot_reconstruction_tradeoff,
    plot_significant_fraction,
    plot_steering,
    plot_topomaps,
    plot_trf_weights,
    plot_tsne_by_label,
    save_figure,
)

CHANNELS = ["Fz", "Cz", "Pz", "Oz", "C3", "C4", "P3", "P4"]
SFREQ = 128.0


def trf_table(rng, *, n_subjects=4, features=(3, 7), peak_ms=(100, 250)):
    """Tidy TRF weights; feature 7 carries a planted response peaking at Pz at ``peak_ms``."""
    lags = np.arange(0, int(0.4 * SFREQ) + 1) / SFREQ
    spatial = np.array([0.3, 0.6, 1.0, 0.7, 0.4, 0.4, 0.8, 0.8])
    shape = sum(((-1) ** k) * np.exp(-0.5 * ((lags - p / 1e3) / 0.02) ** 2) for k, p in enumerate(peak_ms))
    rows = []
    for s in range(n_subjects):
        for f in features:
            gain = 1.0 if f == 7 else 0.1
            w = gain * spatial[:, None] * shape[None] + 0.02 * rng.standard_normal((len(CHANNELS), lags.size))
            for c, ch in enumerate(CHANNELS):
                rows.append(pd.DataFrame({"subject": f"s{s}", "model": "whisper", "layer": 2, "feature": f,
                                          "channel": ch, "split": "test", "lag": lags, "weight": w[c]}))
    return pd.concat(rows, ignore_index=True)


def protocol_summary(rng):
    return pd.DataFrame([{"model": m, "layer": layer, "fraction_significant": rng.uniform(0, 0.03),
                          "n_features": 1000} for m in ("whisper", "hubert") for layer in (1, 2, 3, 4)])


def encoding_table(rng):
    rows = []
    for s in range(5):
        for layer in (1, 2, 3, 4):
            for space, base in (("sae", 0.05 + 0.01 * layer), ("dense_pca", 0.04 + 0.01 * layer)):
                rows += [{"subject": f"s{s}", "model": "whisper", "layer": layer, "feature_space": space,
                          "channel": ch, "r": base + 0.01 * rng.standard_normal()} for ch in CHANNELS[:3]]
        rows += [{"subject": f"s{s}", "model": "whisper", "layer": -1, "feature_space": "envelope",
                  "channel": ch, "r": 0.04 + 0.01 * rng.standard_normal()} for ch in CHANNELS[:3]]
    return pd.DataFrame(rows)


def recon_table(rng):
    return pd.DataFrame([{"layer": layer, "sae": f"k{k}", "l0": float(k),
                          "normalized_l2": 0.8 / np.sqrt(k) + 0.05 * layer}
                         for layer in (1, 2, 3, 4) for k in (8, 32, 128)])


def consistency_table(rng):
    return pd.DataFrame({"reference": "seed0", "sae": ["seed0", "seed1", "seed2", "untrained"],
                         "coverage": [1.0, 0.62, 0.58, 0.03], "shared_fraction": [1.0, 0.41, 0.39, 0.0],
                         "floor_shared_fraction": [0.0, 0.0, 0.0, 0.0], "coverage_floor": 0.02})


def erasure_curves(rng):
    steps = np.arange(0, 21)
    return pd.concat([pd.DataFrame({"concept": c, "n_removed": steps, "last_removed": steps - 1,
                                    "mcc": np.clip(0.9 * np.exp(-steps / tau), -1, 1)})
                      for c, tau in (("a", 3.0), ("i", 6.0), ("u", 10.0))], ignore_index=True)


def steering_summary(rng):
    alphas = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    return pd.DataFrame({"alpha": alphas, "fpr": np.clip(0.5 - 0.1 * alphas, 0, 1),
                         "mean_no_speech_prob": 0.5, "wer": 0.1 + 0.02 * alphas**2, "n_nonspeech": 20,
                         "n_speech": 10})


def tsne_table(rng):
    n = 60
    label = np.repeat(["speech", "sounds", "music"], n // 3)
    centres = {"speech": (0, 0), "sounds": (5, 0), "music": (0, 5)}
    xy = np.array([centres[lab] for lab in label]) + rng.standard_normal((n, 2))
    return pd.DataFrame({"feature": np.arange(n), "x": xy[:, 0], "y": xy[:, 1], "label": label})


# name -> (function, input factory, extra keyword arguments, required columns of the table)
CASES = {
    "trf_weights": (plot_trf_weights, trf_table, {}, ["feature", "channel", "lag", "weight"]),
    "topomaps": (plot_topomaps, trf_table, {}, ["feature", "channel", "lag", "weight"]),
    "significant_fraction": (plot_significant_fraction, protocol_summary, {},
                             ["layer", "fraction_significant", "model"]),
    "layer_r": (plot_layer_r, encoding_table, {}, ["layer", "r", "feature_space", "subject", "model"]),
    "reconstruction": (plot_reconstruction_tradeoff, recon_table, {"sae_col": "sae"},
                       ["l0", "normalized_l2", "layer", "sae"]),
    "consistency": (plot_consistency, consistency_table, {"iou_floor_col": "coverage_floor"},
                    ["sae", "coverage", "coverage_floor", "shared_fraction", "floor_shared_fraction"]),
    "erasure": (plot_erasure_curves, erasure_curves, {"level": 0.2}, ["concept", "n_removed", "mcc"]),
    "steering": (plot_steering, steering_summary, {}, ["alpha", "fpr", "wer"]),
    "tsne": (plot_tsne_by_label, tsne_table, {}, ["x", "y", "label"]),
}


def _check_files(files, stem):
    assert isinstance(files, FigureFiles)
    assert files.png == stem.with_suffix(".png") and files.svg == stem.with_suffix(".svg")
    assert files.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = files.svg.read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert not [p for p in stem.parent.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers
    return svg


@pytest.mark.parametrize("name", CASES)
def test_figure_writes_png_and_svg(name, rng, tmp_path):
    func, make, kwargs, _ = CASES[name]
    stem = tmp_path / "figs" / name  # the folder does not exist yet
    _check_files(func(make(rng), stem, **kwargs), stem)


@pytest.mark.parametrize("name", CASES)
def test_missing_column_is_named(name, rng, tmp_path):
    func, make, kwargs, required = CASES[name]
    for column in required:
        table = make(rng).drop(columns=column)
        present = re.escape(str([str(c) for c in table.columns]))
        with pytest.raises(InputError, match=rf"lacks the column\(s\) \['{column}'\]; columns present: {present}"):
            func(table, tmp_path / name, **kwargs)
    assert not list(tmp_path.iterdir())  # nothing written on failure


@pytest.mark.parametrize("name", CASES)
def test_empty_table(name, rng, tmp_path):
    func, make, kwargs, _ = CASES[name]
    table = make(rng).iloc[:0]
    with pytest.raises(InputError, match=r"is empty \(0 rows\); columns present: \["):
        func(table, tmp_path / name, **kwargs)


@pytest.mark.parametrize("name", ["steering", "erasure", "layer_r"])
def test_non_numeric_column(name, rng, tmp_path):
    func, make, kwargs, _ = CASES[name]
    table = make(rng)
    column = {"steering": "wer", "erasure": "mcc", "layer_r": "r"}[name]
    table[column] = table[column].astype(str)
    with pytest.raises(InputError, match=rf"\['{column}'\] must hold numbers, got dtype (object|str)"):
        func(table, tmp_path / name, **kwargs)


def test_not_a_table(tmp_path):
    with pytest.raises(InputError, match="summary must be an instance of DataFrame, got dict"):
        plot_steering({"alpha": [0]}, tmp_path / "x")


def test_column_mapping(rng, tmp_path):
    """Other column names are accepted through the *_col arguments."""
    table = steering_summary(rng).rename(columns={"alpha": "strength", "fpr": "false_pos"})
    svg = _check_files(plot_steering(table, tmp_path / "s.png", alpha_col="strength", fpr_col="false_pos"),
                       tmp_path / "s")
    assert "False speech detections" in svg and "WER" in svg


def test_figure_text_in_svg(rng, tmp_path):
    """Legends and titles carry the labels of the data (text stays text in the SVG)."""
    svg = plot_tsne_by_label(tsne_table(rng), tmp_path / "t").svg.read_text()
    assert all(label in svg for label in ("speech", "sounds", "music"))
    svg = plot_layer_r(encoding_table(rng), tmp_path / "r").svg.read_text()
    assert all(space in svg for space in ("sae", "dense_pca", "envelope"))
    svg = plot_trf_weights(trf_table(rng), tmp_path / "w", channel="Cz").svg.read_text()
    assert "Feature 7" in svg and "Cz (mean ± s.e.m.)" in svg  # default: the strongest feature


def test_single_channel_trf(rng, tmp_path):
    """The protocol's one-channel table draws a butterfly of one; topographies need >= 3 channels."""
    table = trf_table(rng, n_subjects=3)
    pz = table[table.channel == "Pz"]
    svg = plot_trf_weights(pz, tmp_path / "pz", feature=3, split="test").svg.read_text()
    assert "Feature 3, test runs" in svg and "all channels (n = 1)" in svg
    with pytest.raises(InputError, match=r"at least 3 channels; the montage knows \['Pz'\]"):
        plot_topomaps(pz, tmp_path / "pz_topo")


def test_tsne_labels_joined_from_table(rng, tmp_path):
    emb = tsne_table(rng)
    labels = emb[["feature", "label"]].iloc[:40]  # 20 features left without a label
    svg = plot_tsne_by_label(emb.drop(columns="label"), tmp_path / "t", labels=labels).svg.read_text()
    assert "unlabelled" in svg and "music" not in svg
    with pytest.raises(InputError, match=r"labels lacks the column\(s\) \['label'\]"):
        plot_tsne_by_label(emb, tmp_path / "t", labels=labels.drop(columns="label"))


def test_trf_selection_errors(rng, tmp_path):
    table = trf_table(rng)
    with pytest.raises(InputError, match=r"channel='Xx' is not in column 'channel'; values present: \['C3'"):
        plot_trf_weights(table, tmp_path / "w", channel="Xx")
    with pytest.raises(InputError, match=r"feature=99 is not in column 'feature'; values present: \[3, 7\]"):
        plot_trf_weights(table, tmp_path / "w", feature=99)
    with pytest.raises(InputError, match=r"split='dev' is not in column 'split'; values present: \['test'\]"):
        plot_topomaps(table, tmp_path / "w", split="dev")
    with pytest.raises(InputError, match=r"times must be lags within \[0.0, 0.3984375\] s, got \[0.9\]"):
        plot_topomaps(table, tmp_path / "w", times=[0.9])


def test_peak_lags_recovers_planted_peaks(rng):
    times = np.arange(0, 52) / SFREQ
    gfp = (np.exp(-0.5 * ((times - 0.1) / 0.02) ** 2) + 0.6 * np.exp(-0.5 * ((times - 0.25) / 0.02) ** 2)
           + 0.3 * np.exp(-0.5 * ((times - 0.35) / 0.01) ** 2)
           + 0.1 * np.exp(-0.5 * ((times - 0.18) / 0.01) ** 2))  # a noise bump below 20 % of the max
    np.testing.assert_allclose(peak_lags(gfp, times, 2), [0.1, 0.25], atol=1 / SFREQ)
    np.testing.assert_allclose(peak_lags(gfp, times, 5), [0.1, 0.25, 0.35], atol=1 / SFREQ)
    np.testing.assert_allclose(peak_lags(gfp, times, 5, min_ratio=0.05), [0.1, 0.18, 0.25, 0.35],
                               atol=1 / SFREQ)
    ramp = np.linspace(0, 1, times.size)  # no interior peak: the edge maximum
    np.testing.assert_allclose(peak_lags(ramp, times, 3), [times[-1]])


def test_topomaps_channels_and_montage(rng, tmp_path):
    table = trf_table(rng, n_subjects=2)
    extra = table[table.channel == "Fz"].assign(channel="EOG1")
    with pytest.warns(UserWarning, match=r"Channels \['EOG1'\] have no position in the montage"):
        plot_topomaps(pd.concat([table, extra]), tmp_path / "m", times=[0.1, 0.25])
    lower = table.assign(channel=table.channel.str.lower())  # names matched case-insensitively
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plot_topomaps(lower, tmp_path / "lower").png.stat().st_size > 0
    with pytest.raises(InputError, match=r"the montage knows \[\] of the table's channels \['X1'"):
        plot_topomaps(table.assign(channel=table.channel.map(lambda c: "X" + str(CHANNELS.index(c) + 1))),
                      tmp_path / "m")
    with pytest.raises(InputError, match=r"Invalid value for 'montage': got 'colin27_102'.*Did you mean"):
        plot_topomaps(table, tmp_path / "m", montage="colin27_102")


def test_mel_receptive_fields(rng, tmp_path):
    fields = rng.standard_normal((5, 16, 11))
    lags = np.linspace(-0.1, 0.1, 11)
    freqs = np.geomspace(60, 7600, 16)
    stem = tmp_path / "mel"
    svg = _check_files(plot_mel_receptive_fields(fields, stem, feature_ids=[4, 9, 12, 30, 31], lags=lags,
                                                 mel_freqs=freqs, n_cols=3), stem)
    assert "feature 31" in svg and "Frequency (kHz)" in svg
    _check_files(plot_mel_receptive_fields(fields[:1], tmp_path / "one"), tmp_path / "one")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"fields": np.zeros((4, 8))}, r"fields must be a non-empty array with 3 axes, got shape \(4, 8\)"),
    ({"fields": np.zeros((0, 8, 5))}, r"fields must be a non-empty array with 3 axes, got shape \(0, 8, 5\)"),
    ({"fields": np.full((1, 8, 5), np.nan)}, r"fields holds 40 non-finite value\(s\)"),
    ({"lags": np.zeros(4)}, r"lags must have 5 entries \(one per row of the data\), got 4"),
    ({"mel_freqs": np.zeros(9)}, r"mel_freqs must have 8 entries \(one per row of the data\), got 9"),
    ({"feature_ids": [1, 2]}, r"feature_ids must have 3 entries \(one per row of the data\), got 2"),
    ({"n_cols": 0}, r"n_cols must be in \[1, inf\], got 0"),
])
def test_mel_receptive_fields_bad_input(kwargs, match, rng, tmp_path):
    args = {"fields": rng.standard_normal((3, 8, 5)), **kwargs}
    with pytest.raises(InputError, match=match):
        plot_mel_receptive_fields(args.pop("fields"), tmp_path / "mel", **args)
    assert not list(tmp_path.iterdir())


def test_save_figure_suffix_and_overwrite(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    first = save_figure(fig, tmp_path / "a.svg")  # a figure suffix is dropped from the stem
    assert first == FigureFiles(tmp_path / "a.png", tmp_path / "a.svg")
    svg = first.svg.read_bytes()
    second = save_figure(fig, tmp_path / "a")
    assert second.svg.read_bytes() == svg  # reproducible SVG: no date, fixed ids
    assert second == first and sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.svg"]
    with pytest.raises(InputError, match="path must be an instance of path-like, got int"):
        save_figure(fig, 3)


def test_erasure_level_checked(rng, tmp_path):
    with pytest.raises(InputError, match=r"level must be in \[-1, 1\], got 2"):
        plot_erasure_curves(erasure_curves(rng), tmp_path / "e", level=2)
