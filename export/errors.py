"""Errors every exporter raises (defined on the ground floor, edgectl.errors, because the runtime's host C
loader edgectl.hostc raises them too and must not import export)."""
from edgectl.errors import ExportError, TargetUnavailable

__all__ = ["ExportError", "TargetUnavailable"]
