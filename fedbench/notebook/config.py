"""Settings of the notebook front-end, configurable with ``%config Fedbench.<name> = value``.

The magics class :class:`fedbench.notebook.magics.Fedbench` inherits these
traits, so ``%config Fedbench`` lists them with their help.  They apply to
federations the magics *create* from then on, and to every dashboard they show.
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Enum, Int, TraitError, Unicode, validate
from traitlets.config import Configurable

__all__ = ["FIGURE_BACKENDS", "VERBOSITY", "FedbenchConfig"]

#: ``widget``: live plotly ``FigureWidget`` (needs anywidget); ``static``: plain ``Figure`` re-rendered on change.
FIGURE_BACKENDS = ("widget", "static")
#: ``quiet``: store results without showing them; ``verbose``: also show each run's messages.
VERBOSITY = ("quiet", "normal", "verbose")


class FedbenchConfig(Configurable):
    """Configurable settings of the fedbench magics."""

    key_bits = Int(
        2048,
        help="Paillier modulus size of federations created by %%federate (2048 or more unless "
        "allow_insecure_key_size is True).",
    ).tag(config=True)
    allow_insecure_key_size = Bool(
        False, help="Allow keys below 2048 bits in new federations (fast tests and demos only)."
    ).tag(config=True)
    backend = Enum(
        ["inprocess", "process"],
        "inprocess",
        help="Execution backend of new federations: 'inprocess' or 'process' (encryption on every core).",
    ).tag(config=True)
    audit = Bool(False, help="New federations keep the bytes of every message in the transcript.").tag(config=True)
    figure_backend = Enum(
        list(FIGURE_BACKENDS),
        "widget",
        help="Dashboards draw live plotly FigureWidgets ('widget', needs anywidget) or plain figures "
        "re-rendered on change ('static': use it where anywidget models fail to load, e.g. VS Code).",
    ).tag(config=True)
    verbosity = Enum(
        list(VERBOSITY),
        "normal",
        help="'quiet' stores results without showing them; 'normal' shows a result card; "
        "'verbose' also shows each run's messages.",
    ).tag(config=True)
    progress = Bool(True, help="Show progress bars in notebooks (never shown in plain Python).").tag(config=True)
    federation_name = Unicode(
        "fed", help="Variable of the user namespace bound to the federation %%federate creates."
    ).tag(config=True)

    @validate("key_bits")
    def _check_key_bits(self, proposal: Any) -> int:
        value = proposal["value"]
        if value < 256 or value % 2:
            raise TraitError(f"Fedbench.key_bits must be an even integer >= 256, got {value}")
        return value

    @validate("federation_name")
    def _check_name(self, proposal: Any) -> str:
        value = proposal["value"]
        if not value.isidentifier():
            raise TraitError(f"Fedbench.federation_name must be a Python identifier, got {value!r}")
        return value

    def federation_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~fedbench.Federation` for a new federation."""
        return {
            "key_bits": self.key_bits,
            "backend": self.backend,
            "allow_insecure_key_size": self.allow_insecure_key_size,
            "audit": self.audit,
        }

    def settings(self) -> dict[str, Any]:
        """Every setting and its current value."""
        return {name: getattr(self, name) for name in self.trait_names(config=True)}
