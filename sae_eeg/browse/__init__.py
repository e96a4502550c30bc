"""A static feature browser: look at and listen to every SAE feature beside its brain response.

:func:`write_feature_browser` writes the site of one layer from plain data (codes,
audio, the SAE, per-feature tables, TRF tables); :func:`write_layer_list` the page
that links the sites of several layers. A site is plain HTML, CSS and JavaScript
that opens from disk with no server and no network. The pipeline's ``browse``
stage (:mod:`sae_eeg.pipeline.browser`) gathers these data from its output folder.
"""

from .site import BrowserSite, write_feature_browser, write_layer_list
from .tables import FeatureTable, read_feature_table

__all__ = ["BrowserSite", "FeatureTable", "read_feature_table", "write_feature_browser", "write_layer_list"]
