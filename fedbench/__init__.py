"""fedbench: a Jupyter-native workbench for privacy-preserving collaborative analytics."""

from __future__ import annotations

__version__ = "0.1.0"
