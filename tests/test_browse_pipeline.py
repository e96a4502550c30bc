"""The feature browser of a pipeline output folder: which tables join, the evaluations' seed matches, the command."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import yaml
from typer.testing import CliRunner

from sae_eeg._io import provenance, read_table, write_table
from sae_eeg.cli import app
from sae_eeg.errors import InputError
from sae_eeg.evals import decoder_directions
from sae_eeg.pipeline import build_browser, run_pipeline
from sae_eeg.pipeline.browser import feature_tables
from sae_eeg.pipeline.config import load_pipeline_config
from sae_eeg.sae import load_sae

LAYER = 3  # the demo's planted layer: the evaluations' layer


def _data(path):
    """The arguments a data script passes to the page."""
    text = path.read_text()
    return json.loads("[" + text[text.index("(") + 1:text.rindex(")")] + "]")


def _index_column(site, key):
    (index,) = _data(site / "data" / "index.js")
    j = [c["key"] for c in index["columns"]].index(key)
    return [row[j] for row in index["rows"]]


def test_group_and_evaluation_tables_join_and_a_new_features_table_needs_no_code(tmp_path):
    cfg = load_pipeline_config({"output_dir": str(tmp_path / "out"), "layers": [2, 3]}, check_files=False)
    group = tmp_path / "out" / "alignment" / "layer_3" / "group"
    evals = tmp_path / "out" / "evals"
    prov = provenance({})
    features = np.arange(6)
    write_table(pd.DataFrame({"layer": 3, "feature": features, "channel": "Pz", "t": features * 1.0,
                              "pval": 0.01 * features, "pval_corrected": 0.05 * features, "lag": 0.1,
                              "significant": features < 2}), group / "protocol_features", prov)
    # what a new analysis writes: its rows join with the columns it has, the best by pval_corrected
    write_table(pd.DataFrame({"layer": 3, "feature": [4, 4, 1], "effect": [0.2, 0.5, 0.1], "lag": [0.1, 0.2, 0.1],
                              "pval_corrected": [0.3, 0.01, 0.5], "tracked": [False, True, False]}),
                group / "novel_features", prov)
    write_table(pd.DataFrame({"subject": ["01", "02"], "feature": [1, 1], "t": [1.0, 2.0]}),
                group / "protocol_subjects", prov)                      # per subject: not a per-feature table
    write_table(pd.DataFrame({"layer": [3], "band": ["sae"]}), group / "bands_features", prov)  # no feature column
    write_table(pd.DataFrame({"layer": [2, 3, 3], "feature": [0, 0, 1], "label": ["music", "speech", "sounds"],
                              "purity": [0.5, 0.9, 0.7]}), evals / "feature_classes", prov)
    write_table(pd.DataFrame({"layer": 3, "feature": features, "seed": 1, "match": features[::-1],
                              "cosine": np.linspace(0.2, 0.9, 6), "shared": features > 3}), evals / "seed_matches", prov)

    tables = {t.name: t for t in feature_tables(cfg, 3)}
    assert list(tables) == ["protocol", "class", "seed", "novel"]
    assert tables["protocol"].best == "pval" and "pval_corrected" in tables["protocol"].index_columns()
    novel = tables["novel"]
    assert novel.best == "pval_corrected" and novel.index_columns() == {
        "effect": "novel effect", "lag": "novel lag", "pval_corrected": "novel pval_corrected",
        "tracked": "novel tracked"}
    assert novel.description == "From alignment/layer_3/group/novel_features.parquet."
    assert list(tables["seed"].for_layer(3)["cosine"]) == list(np.linspace(0.2, 0.9, 6))
    # layer 2: no group folder, no seed matches; its feature classes only
    assert [t.name for t in feature_tables(cfg, 2)] == ["class"]


def test_seed_matches_of_the_evaluations_are_the_decoder_cosines_the_browser_shows(small_demo):
    out = Path(small_demo["output_dir"])
    table = read_table(out / "evals" / "seed_matches.parquet")
    sae, other = load_sae(out / "sae", layer=LAYER), load_sae(out / "sae_second_seed", layer=LAYER)
    assert set(table["layer"]) == {LAYER} and list(table["feature"]) == list(range(sae.n_features))
    assert sorted(table["match"]) == list(range(other.n_features))              # one-to-one
    W, V = decoder_directions(sae), decoder_directions(other)
    cos = np.sum(W[table["feature"]] * V[table["match"]], axis=1) / (
        np.linalg.norm(W[table["feature"]], axis=1) * np.linalg.norm(V[table["match"]], axis=1))
    np.testing.assert_allclose(table["cosine"], cos, atol=1e-6)
    assert list(table["shared"]) == list(table["cosine"] >= 0.7)
    site = out / "browser" / f"layer_{LAYER}"
    np.testing.assert_allclose(_index_column(site, "seed.cosine"), table["cosine"], rtol=1e-3)  # 4 digits shown
    # every layer is mapped by the evaluations, so the browser computed no t-SNE of its own
    tsne = read_table(out / "evals" / "tsne.parquet")
    assert set(tsne["layer"]) == set(small_demo["config"]["layers"])
    for layer in small_demo["config"]["layers"]:
        (index,) = _data(out / "browser" / f"layer_{layer}" / "data" / "index.js")
        mapped = {f for f, xy in enumerate(index["tsne"]) if xy is not None}
        assert mapped == set(tsne.loc[tsne["layer"] == layer, "feature"])


def test_the_demo_browser_shows_the_features_the_attribution_tracks(small_demo):
    out = Path(small_demo["output_dir"])
    table = read_table(out / "alignment" / f"layer_{LAYER}" / "group" / "attribution_features.parquet")
    tracked = set(table.loc[table["significant"].to_numpy(dtype=bool), "feature"])
    reported = small_demo["recovery"]["attribution"]["table"]
    assert tracked and tracked == set(reported.loc[reported["layer"] == LAYER, "feature"])
    shown = _index_column(out / "browser" / f"layer_{LAYER}", "attribution.significant")
    assert {f for f, value in enumerate(shown) if value} == tracked


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_browse_command_brings_the_stage_up_to_date_or_writes_a_custom_browser(small_demo, tmp_path):
    # a copy of the demo's results (hard links: written files are replaced by renames, never changed in place)
    copy = tmp_path / "copy"
    shutil.copytree(small_demo["output_dir"], copy, copy_function=os.link)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**small_demo["config"], "output_dir": str(copy)}))
    before = (copy / "browser" / f"layer_{LAYER}" / "site.json").stat().st_mtime_ns
    done = _cli("browse", config, "--force")                              # everything is up to date: nothing runs
    assert done.exit_code == 0, done.output
    for layer in small_demo["config"]["layers"]:
        assert f"Layer {layer}: " in done.output
    assert f"Feature browser: {copy / 'browser' / 'index.html'}" in done.output
    assert (copy / "browser" / f"layer_{LAYER}" / "site.json").stat().st_mtime_ns == before
    (copy / "browser" / "layer_2" / "data" / "index.js").unlink()         # a file of the browser gone: it is rebuilt
    assert set(run_pipeline(config, ("browse",)).ran) == {"browse"}
    assert (copy / "browser" / "layer_2" / "data" / "index.js").is_file()

    done = _cli("browse", config, "--layer", LAYER, "--channel", "Pz")
    assert done.exit_code == 2 and "--layer, --channel choose what a custom browser shows: give --out" in done.output
    extra = tmp_path / "extra.csv"
    pd.DataFrame({"feature": [0, 1], "layer": LAYER, "score": [0.5, 0.25]}).to_csv(extra, index=False)
    done = _cli("browse", config, "--out", tmp_path / "custom", "--layer", LAYER, "--table", f"extra={extra}")
    assert done.exit_code == 0, done.output
    assert f"Layer {LAYER}: " in done.output and "Layer 2: " not in done.output
    assert _index_column(tmp_path / "custom" / f"layer_{LAYER}", "extra.score")[:3] == [0.5, 0.25, None]


def test_build_browser_refuses_missing_trajectories(tmp_path):
    soundfile.write(tmp_path / "story.wav", np.zeros(1600, np.float32), 16000)
    cfg = {"output_dir": str(tmp_path / "out"), "layers": [1], "stimuli": {"story": str(tmp_path / "story.wav")}}
    with pytest.raises(InputError, match=r"No SAE trajectories of layer 1 for 1 stimuli \(e.g. .*story/layer_1.npz\); "
                                         r"run `sae-eeg extract` first"):
        build_browser(cfg)
    assert not (tmp_path / "out" / "browser").exists()
