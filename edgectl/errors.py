"""Errors every exporter raises: the message names the bundle field, target or tool at fault (export.errors
re-exports them; they live here so edgectl.hostc, which the runtime uses, raises the same ones)."""


class ExportError(ValueError):
    """Bad input or a failed check: nothing is left half-written in the output folder."""


class TargetUnavailable(ExportError):
    """The target's toolchain or runtime is not installed here; the message says what to install."""
