"""The SAE evaluations of the pipeline: reconstruction, consistency, erasure, steering.

All tables go to ``output_dir/evals/`` (parquet + CSV with provenance):

* ``reconstruction``: :func:`~sae_eeg.sae.reconstruction_metrics` on held-out
  speech plus the spliced WER / cross-entropy change, one row per layer;
* ``feature_classes``: speech / sounds / music label of every feature, per layer;
* ``consistency``: the steering layer's SAE against a second seed and an
  untrained SAE (activation IoU and decoder-cosine variants);
* ``seed_matches``: per feature of that layer, the second seed's feature matched
  to it one-to-one (Hungarian on decoder cosine), their ``cosine`` and whether it
  counts as ``shared``: the feature browser's seed-consistency column;
* ``erasure_curves`` / ``erasure_summary``: concept erasure of the clip category;
* ``steering``: false-positive rate on non-speech and WER on speech per alpha;
* ``tsne``: 2-D embedding of each layer's encoder rows (the features that fire on the clips);
* ``receptive_fields.npz``: mean log-mel windows around the top speech features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._io import atomic_path, provenance
from ..audio import Audio, load_audio
from ..evals import (
    classify_features,
    clip_features,
    collect_dataset_stats,
    compare_saes,
    concept_erasure,
    decoder_consistency,
    decoder_directions,
    false_speech_experiment,
    feature_tsne,
    log_mel_spectrogram,
    mel_receptive_fields,
)
from ..sae import ArrayActivationStore, BatchTopKSAE, reconstruction_metrics, train_saes
from ..sae.splice import spliced_evaluation
from .._io import write_table
from .io import load_series
from .outputs import output_path
from .resources import evals_dir, feature_file, open_backbone, open_saes, training_config


def _clips(paths):
    return [load_audio(p) for p in paths]


def _encode_clips(backbone, layer, clips):
    """Activations of clips stacked, with each frame's clip index and time."""
    acts, clip_ids, times = [], [], []
    for i, clip in enumerate(clips):
        a = backbone.activations(clip.waveform, clip.sfreq, [layer])[layer]
        acts.append(a.values)
        clip_ids.append(np.full(len(a.times), i))
        times.append(a.times)
    return np.concatenate(acts), np.concatenate(clip_ids), np.concatenate(times)


def _segments(clip_ids, times, categories, length):
    """Segment id and category of every frame (clips cut into ``length`` s pieces)."""
    seg = clip_ids * 10_000 + np.floor(times / length).astype(int)
    _, seg = np.unique(seg, return_inverse=True)
    labels = pd.Series(categories).groupby(seg).first().to_numpy()
    return seg, labels


def second_seed_sae(cfg, layer, seed, out_dir, acts):
    """An SAE of ``layer`` trained like the pipeline's but from another seed."""
    training = training_config(cfg).to_config()
    training.update(layers=[layer], seed=seed)
    return train_saes(ArrayActivationStore({layer: acts}, seed=seed), training, out_dir=out_dir,
                      device=cfg.device)[layer]


def evaluation_layer(cfg):
    """The layer of the consistency, erasure and steering evaluations (``evaluate.layer``, default the last)."""
    return cfg.evaluate.layer or cfg.layers[-1]


def seed_matches(sae, other, *, layer, seed):
    """Each feature of ``sae`` with the feature of ``other`` matched to it (Hungarian on decoder cosine).

    Returns
    -------
    table : pandas.DataFrame
        ``layer``, ``feature``, ``seed`` (of ``other``), ``match``, ``cosine``,
        ``shared`` (cosine at or above :func:`~sae_eeg.evals.decoder_consistency`'s
        threshold).
    """
    matches = decoder_consistency(decoder_directions(sae), decoder_directions(other), random_state=0).matches
    return pd.DataFrame({"layer": layer, "feature": matches["feature_a"], "seed": seed, "match": matches["feature_b"],
                         "cosine": matches["cosine"], "shared": matches["shared"]})


def _tsne(sae, codes, layer):
    """t-SNE map of the encoder rows of the features that fire in ``codes`` (empty under 3 of them)."""
    alive = np.flatnonzero(np.asarray((codes != 0).sum(axis=0)).ravel() > 0)
    if alive.size < 3:
        return pd.DataFrame({"feature": np.array([], np.int64), "x": [], "y": [], "layer": []})
    W_enc = sae.encoder.weight.detach().cpu().numpy()
    return feature_tsne(W_enc, features=alive, random_state=0).assign(layer=layer)


def evaluate_task(cfg, stimuli):
    """Run every evaluation and write the tables under ``output_dir/evals``.

    ``stimuli`` are the stimuli whose activations train the second-seed SAE.
    """
    settings = cfg.evaluate
    out = evals_dir(cfg)
    prov = provenance(cfg.results_config())
    backbone, saes = open_backbone(cfg), open_saes(cfg)
    layer = evaluation_layer(cfg)
    speech, music, noise = _clips(settings.speech), _clips(settings.music), _clips(settings.noise)
    clips = speech + music + noise
    categories_clip = np.array(["speech"] * len(speech) + ["music"] * len(music) + ["sounds"] * len(noise))

    recon, classes, maps = [], [], []
    for n, sae in saes.items():
        acts, clip_ids, times = _encode_clips(backbone, n, clips)
        is_speech = categories_clip[clip_ids] == "speech"
        row = {"layer": n, **reconstruction_metrics(sae, acts[is_speech])}
        row.update(spliced_evaluation(backbone, sae, n, speech, list(settings.references)))
        recon.append(row)
        codes = sae.encode_sparse(acts)
        stats = collect_dataset_stats(codes, clip_ids, categories_clip[clip_ids])
        classes.append(classify_features(stats).assign(layer=n))
        maps.append(_tsne(sae, codes, n))
        if n == layer:
            layer_data = (acts, clip_ids, times, codes)
    write_table(pd.DataFrame(recon), out / "reconstruction", prov)
    feature_classes = pd.concat(classes, ignore_index=True)
    write_table(feature_classes, out / "feature_classes", prov)

    acts, clip_ids, times, codes = layer_data
    sae = saes[layer]
    compared = {"seed 0": sae}
    if settings.second_seed is not None:
        train_acts = np.concatenate([load_series(feature_file(cfg, name, f"dense_layer_{layer}")).data
                                     for name in stimuli])
        other = second_seed_sae(cfg, layer, settings.second_seed, output_path(cfg.output_dir, "sae_second_seed"),
                                train_acts)
        compared[f"seed {settings.second_seed}"] = other
        write_table(seed_matches(sae, other, layer=layer, seed=settings.second_seed), out / "seed_matches", prov)
    compared["untrained"] = BatchTopKSAE(sae.d_model, sae.n_features, int(sae.k), random_state=123).eval()
    consistency = compare_saes(compared, acts, clip_ids, reference="seed 0", k_per_frame=int(sae.k),
                               random_state=0).assign(layer=layer)
    write_table(consistency, out / "consistency", prov)

    seg, seg_labels = _segments(clip_ids, times, categories_clip[clip_ids], settings.segment)
    pooled, _ = clip_features(codes, seg)
    erasure = concept_erasure(pooled, seg_labels, n_removed=range(0, 41, 2), random_state=0)
    write_table(erasure.curves.assign(layer=layer), out / "erasure_curves", prov)
    write_table(erasure.summary.assign(layer=layer), out / "erasure_summary", prov)

    reversed_speech = [Audio(c.waveform[::-1].copy(), c.sfreq) for c in speech]
    report = false_speech_experiment(backbone, sae, layer, music + noise + reversed_speech, speech,
                                     list(settings.references), alphas=settings.alphas,
                                     n_features=min(settings.n_steering_features, sae.n_features),
                                     random_state=0)
    write_table(report.summary.assign(layer=layer), out / "steering", prov)

    write_table(pd.concat(maps, ignore_index=True), out / "tsne", prov)

    _receptive_fields(codes, clip_ids, times, clips, feature_classes[feature_classes.layer == layer],
                      settings.n_receptive_fields, out / "receptive_fields.npz")
    return out


def _receptive_fields(codes, clip_ids, times, clips, classes, n_features, path):
    """Mean log-mel windows of the speech features that fire most, saved as .npz."""
    log_mels = {i: log_mel_spectrogram(c.waveform, c.sfreq) for i, c in enumerate(clips)}
    counts = np.asarray((codes != 0).sum(axis=0)).ravel()
    speech_ids = classes.loc[classes["label"] == "speech", "feature"].to_numpy()
    top = speech_ids[np.argsort(-counts[speech_ids])][:n_features]
    found = mel_receptive_fields(codes, clip_ids, times, log_mels, features=top)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        if found.features.size:
            np.savez(fh, fields=found.fields.transpose(0, 2, 1), features=found.features, lags=found.lags,
                     mel_freqs=found.mel_freqs)
        else:
            np.savez(fh, fields=np.zeros((0, 0, 0)), features=np.array([], int), lags=np.array([]),
                     mel_freqs=np.array([]))
