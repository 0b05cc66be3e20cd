"""Settings of the notebook front-end, configurable with ``%config Fedbench.<name> = value``.

The magics class :class:`fedbench.notebook.magics.Fedbench` inherits these
traits, so ``%config Fedbench`` lists them with their help.  They apply to
federations the magics *create* from then on, and to every dashboard they show.
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, validate
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
        ["inprocess", "process", "ray"],
        "inprocess",
        help="Execution backend of new federations: 'inprocess', 'process' (encryption on every core) or "
        "'ray' (every party an actor on the node holding its data; needs the 'ray' extra, see ray_address).",
    ).tag(config=True)
    ray_address = Unicode(
        "",
        help="Ray cluster of backend 'ray' ('auto', 'head-node:6379', 'ray://head-node:10001'); "
        "empty starts a local Ray instance.",
    ).tag(config=True)
    ray_timeout = Float(
        120.0, help="Seconds a party may take to answer on backend 'ray' before it counts as unavailable."
    ).tag(config=True)
    ray_max_actors = Int(
        0,
        help="On backend 'ray', parties that no node advertises share at most this many actors "
        "(0: one actor per party; set it to simulate many parties on one machine).",
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

    @validate("ray_timeout")
    def _check_ray_timeout(self, proposal: Any) -> float:
        value = proposal["value"]
        if not value > 0:
            raise TraitError(f"Fedbench.ray_timeout must be positive, got {value}")
        return value

    @validate("ray_max_actors")
    def _check_max_actors(self, proposal: Any) -> int:
        value = proposal["value"]
        if value < 0:
            raise TraitError(f"Fedbench.ray_max_actors must be 0 (one actor per party) or more, got {value}")
        return value

    @validate("federation_name")
    def _check_name(self, proposal: Any) -> str:
        value = proposal["value"]
        if not value.isidentifier():
            raise TraitError(f"Fedbench.federation_name must be a Python identifier, got {value!r}")
        return value

    def federation_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~fedbench.Federation` for a new federation."""
        backend: Any = self.backend
        if backend == "ray":
            from ..ray_backend import RayBackend  # imports Ray itself only when the first party is placed

            backend = RayBackend(address=self.ray_address or None, timeout=self.ray_timeout,
                                 max_actors=self.ray_max_actors or None)
        return {
            "key_bits": self.key_bits,
            "backend": backend,
            "allow_insecure_key_size": self.allow_insecure_key_size,
            "audit": self.audit,
        }

    def settings(self) -> dict[str, Any]:
        """Every setting and its current value."""
        return {name: getattr(self, name) for name in self.trait_names(config=True)}
