"""The error types tfcnn raises for problems a user can fix, each with its exit status.

Library code raises these with a message that names the file or field and what was
expected; only `tfcnn.cli` turns them into one printed line and an exit status.
"""

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class TfcnnError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = EXIT_USAGE


class DatasetError(TfcnnError):
    """A dataset file is missing, malformed or fails its checksum, or cannot be fetched."""


class ModelSpecError(TfcnnError):
    """A model name or layer notation that cannot be built."""


class ConfigError(TfcnnError):
    """A setting (flag, config.json field) with a value out of its allowed range."""


class RunDirError(TfcnnError):
    """A run directory that is missing files or cannot be resumed."""


class ImageError(TfcnnError):
    """An image that cannot be used: not an image, truncated, empty, too large, or an array
    of the wrong shape, type or range."""


class ImageTooLarge(ImageError):
    """An image whose decoded pixels would exceed the memory allowed for one image
    (the server answers 413 for it)."""


class TrainingInterrupted(TfcnnError):
    """Training stopped by SIGINT or SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
