"""sae-eeg: which sparse-autoencoder features of audio models does the brain track?"""

__version__ = "0.1.0.dev0"
