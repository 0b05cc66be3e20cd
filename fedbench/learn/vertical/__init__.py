"""Vertical logistic regression after PSI alignment (Hardy et al. 2017; FATE hetero-LR).

* :mod:`.protocol`: what each party computes, and the message flow (:class:`~.protocol.Exchange`);
* :mod:`.result`: :class:`VerticalRun`;
* :mod:`.api`: :func:`fit_vertical` (argument checks, PSI alignment, the joint model).

The ciphertext arithmetic is in :mod:`fedbench.crypto.arithmetic`.
"""

from __future__ import annotations

from .api import fit_vertical
from .protocol import (
    LEAKAGE,
    Exchange,
    v_forget,
    v_guest_residual,
    v_host_forward,
    v_masked_gradient,
    v_result,
    v_rows,
    v_setup,
    v_split,
    v_update,
)
from .result import VERTICAL_THREAT_MODEL, VerticalRun

__all__ = [
    "LEAKAGE",
    "VERTICAL_THREAT_MODEL",
    "Exchange",
    "VerticalRun",
    "fit_vertical",
    "v_forget",
    "v_guest_residual",
    "v_host_forward",
    "v_masked_gradient",
    "v_result",
    "v_rows",
    "v_setup",
    "v_split",
    "v_update",
]
