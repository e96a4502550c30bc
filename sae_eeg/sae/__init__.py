"""Sparse autoencoders: the BatchTopK model, its trainer, activation stores, checkpoints, metrics.

Layers are numbered from 1 (layer n is the output of the n-th transformer block, the
AudioSAE ``layer_n/ae.pt`` convention).
"""

from ._base import SparseAutoencoder
from .batch_topk import BatchTopKSAE, BatchTopKTrainer, SparseCodes
from .checkpoints import ARCHITECTURES, check_sae_for_backbone, load_sae, locate_checkpoint, read_checkpoint, save_sae
from .metrics import reconstruction_metrics
from .store import ActivationStore, ArrayActivationStore, Augmentation, audio_files, mix_at_snr
from .train import TrainingConfig, TrainingSettings, read_training_config, train_saes, train_saes_from_config

__all__ = [
    "ARCHITECTURES", "ActivationStore", "ArrayActivationStore", "Augmentation", "BatchTopKSAE", "BatchTopKTrainer",
    "SparseAutoencoder", "SparseCodes", "TrainingConfig", "TrainingSettings", "audio_files", "check_sae_for_backbone", "load_sae",
    "locate_checkpoint", "mix_at_snr", "read_checkpoint", "read_training_config", "reconstruction_metrics", "save_sae", "train_saes",
    "train_saes_from_config",
]
