"""Shared parameter docstrings, inserted with :func:`fill_doc` (MNE's docdict)."""

import textwrap

docdict = {}

docdict["sfreq"] = """
sfreq : float
    Sampling rate of the time axis, in Hz. Required; never inferred."""

docdict["verbose"] = """
verbose : bool
    Show progress bars and log progress at INFO level. Default False."""

docdict["device"] = """
device : str | torch.device
    Torch device, e.g. ``"cpu"`` or ``"cuda"``. ``"auto"`` takes CUDA when it is
    available."""

docdict["layer"] = """
layer : int
    Transformer block whose output is used, numbered from 1 (layer n is the output
    of the n-th block, the AudioSAE ``layer_n/ae.pt`` convention)."""

docdict["random_state"] = """
random_state : int | numpy.random.Generator | None
    Seed or generator of all randomness in this call; nothing is seeded globally."""

docdict["waveform"] = """
waveform : ndarray, shape (n_samples,)
    Stimulus audio."""

docdict["new_sfreq_grid"] = """
new_sfreq : float
    Rate of the output grid, Hz (first sample at 0 s, ``floor(duration * new_sfreq)``
    samples)."""

docdict["resample_grid"] = """
sfreq, new_sfreq : float
    Input and output sampling rates in Hz.
tmin : float
    Time of the first input sample, s.
new_tmin : float | None
    Time of the first output sample, s (default ``tmin``).
n_times : int | None
    Number of output samples (default: up to the last input time)."""


def fill_doc(obj):
    """Fill ``%(key)s`` placeholders in ``obj.__doc__`` from :data:`docdict`.

    A placeholder without an entry raises ``KeyError`` at import, naming the object.
    """
    doc = obj.__doc__
    if not doc:
        return obj
    lines = doc.splitlines()
    indent = min(
        (len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()), default=0
    )
    filled = {
        key: textwrap.indent(textwrap.dedent(value).strip("\n"), " " * indent).lstrip()
        for key, value in docdict.items()
    }
    try:
        obj.__doc__ = doc % filled
    except KeyError as err:
        raise KeyError(f"Missing docdict entry {err} in the docstring of {obj.__qualname__}") from err
    return obj

docdict["duration_clip"] = """
duration : float
    Length of the clip in seconds (> 0)."""

docdict["sfreq_clip"] = """
sfreq : float
    Sampling rate of the clip in Hz (>= 8000). Default 16000."""
