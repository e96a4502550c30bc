"""A static feature browser: look at and listen to every SAE feature beside its brain response.

:func:`write_feature_browser` writes the site of one layer from plain data (codes,
audio, the SAE, per-feature tables, TRF tables); :func:`build_browser` gathers
those from a pipeline output folder for every layer. A site is plain HTML, CSS and
JavaScript that opens from disk with no server and no network.
"""

from .outputs import build_browser
from .site import BrowserSite, write_feature_browser
from .tables import FeatureTable, read_feature_table

__all__ = ["BrowserSite", "FeatureTable", "build_browser", "read_feature_table", "write_feature_browser"]
