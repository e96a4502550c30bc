"""The exception hierarchy of sae_eeg.

Every error subclasses :class:`SaeEegError` and the built-in error it refines,
so ``except ValueError`` in user code keeps working. Messages name the file,
field or value at fault and say what was expected.
"""


class SaeEegError(Exception):
    """Base class of every error raised by sae_eeg."""


class InputError(SaeEegError, ValueError):
    """A value, array or file given by the user is not what was expected."""


class ConfigError(InputError):
    """A configuration file or dictionary is invalid."""


class ManifestError(InputError):
    """A dataset manifest is invalid; the message lists every problem found."""


class AlignmentError(SaeEegError, ValueError):
    """EEG and stimulus cannot be aligned (missing trigger, durations disagree)."""


class CheckpointError(SaeEegError, ValueError):
    """A file is not a valid SAE checkpoint or does not match the backbone."""


class BackboneError(SaeEegError, ValueError):
    """An audio model cannot be loaded or does not support the request."""


class OutputExistsError(SaeEegError, FileExistsError):
    """An output folder holds results of another configuration (use ``force``)."""


class OutputBusyError(OutputExistsError):
    """An output folder is in use by another run (its lock is held)."""


class TaskFailedError(SaeEegError, RuntimeError):
    """Tasks of a pipeline run failed; the message has one line per failed task and names the log file."""


class SpeechError(SaeEegError, RuntimeError):
    """The offline speech synthesiser (eSpeak NG) could not be loaded or failed."""
