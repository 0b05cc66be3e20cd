"""A polars table whose text and HTML reprs show every cell in full (notes wrap instead of being cut)."""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = ["FullTextFrame"]


class FullTextFrame(pl.DataFrame):
    """A :class:`polars.DataFrame` displayed without truncating strings (wrapped at 100 columns in text).

    Everything else is polars: operations return ordinary DataFrames.
    """

    @staticmethod
    def _display() -> pl.Config:
        return pl.Config(fmt_str_lengths=1000, tbl_width_chars=100, tbl_hide_dataframe_shape=True)

    def __str__(self) -> str:
        with self._display():
            return super().__str__()

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self, **kwargs: Any) -> str:
        with self._display():
            return super()._repr_html_(**kwargs)
