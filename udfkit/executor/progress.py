"""Progress reporters: what ``run_udf(..., progress=True)`` drives.

A reporter has three methods: ``start(total_frames)``, ``advance(frames)`` and ``close()``.
Pass ``progress=True`` for a tqdm bar on stderr, or any object with those methods (for a
notebook widget or a GUI).
"""

from __future__ import annotations

__all__ = ["ProgressReporter", "TqdmReporter", "make_reporter"]


class ProgressReporter:
    """Base reporter: does nothing. Subclass and override the three methods."""

    def start(self, total_frames: int) -> None:
        """Called once before the first partition runs."""

    def advance(self, frames: int) -> None:
        """Called when ``frames`` more frames have been processed."""

    def close(self) -> None:
        """Called once at the end of the run (also after an error or cancellation)."""


class TqdmReporter(ProgressReporter):
    """A tqdm progress bar of frames."""

    def __init__(self, desc: str = "udfkit"):
        self.desc = desc
        self._bar = None

    def start(self, total_frames):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total_frames, desc=self.desc, unit="frame", leave=True)

    def advance(self, frames):
        if self._bar is not None:
            self._bar.update(frames)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def make_reporter(progress):
    """``False``/``None`` → None, ``True`` → :class:`TqdmReporter`, else the object itself."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return TqdmReporter()
    for name in ("start", "advance", "close"):
        if not callable(getattr(progress, name, None)):
            raise TypeError(f"progress: expected True/False or a reporter with start/advance/close, "
                            f"got {progress!r}")
    return progress
