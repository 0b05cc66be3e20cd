"""Progress bars for long work: an ipywidgets bar in notebooks, silence in plain Python."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ._base import in_notebook

__all__ = ["Progress"]


class Progress:
    """A progress bar shown only inside a Jupyter kernel.

    Parameters
    ----------
    total : int
        Number of steps.
    description : str, default ""
        Label left of the bar.
    enabled : bool, optional
        Force the bar on or off; by default on exactly when running in a kernel
        (plain Python and terminal IPython stay quiet).

    Examples
    --------
    >>> with Progress(3, "parties") as bar:   # doctest: +SKIP
    ...     for p in parties:
    ...         bar.advance(note=p)
    """

    def __init__(self, total: int, description: str = "", *, enabled: bool | None = None) -> None:
        self.total = max(1, int(total))
        self.enabled = in_notebook() if enabled is None else bool(enabled)
        self.value = 0
        self.bar: Any = None
        self.label: Any = None
        self.widget: Any = None
        self._shown = False
        if self.enabled:
            import ipywidgets as w

            self.bar = w.IntProgress(min=0, max=self.total, value=0, description=description, bar_style="info")
            self.label = w.HTML()
            self.widget = w.HBox([self.bar, self.label])

    def show(self) -> Progress:
        """Display the bar (once, and only in a kernel)."""
        if self.enabled and not self._shown and in_notebook():
            from IPython.display import display

            display(self.widget)
            self._shown = True
        return self

    def advance(self, steps: int = 1, note: str = "") -> None:
        """Move the bar ``steps`` forward, with an optional note beside it."""
        self.value = min(self.total, self.value + steps)
        if self.bar is not None:
            self.bar.value = self.value
            self.label.value = note

    def close(self, *, success: bool = True) -> None:
        """Finish: on success the bar fills and hides (the result card follows); on failure it stays, red."""
        if self.bar is not None:
            if success:
                self.value = self.bar.value = self.total
                self.widget.layout.display = "none"  # hidden, not closed: closing breaks saved notebook views
            self.bar.bar_style = "success" if success else "danger"

    def __enter__(self) -> Progress:
        return self.show()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(success=exc_type is None)

    def __repr__(self) -> str:
        return f"<Progress {self.value}/{self.total}{'' if self.enabled else ' (quiet)'}>"
