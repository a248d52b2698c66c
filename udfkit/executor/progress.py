"""Progress reporters: what ``run_udf(..., progress=True)`` drives.

A reporter has three methods: ``start(total_frames)``, ``advance(frames)`` and ``close()``.
Pass ``progress=True`` for a tqdm bar on stderr, or any object with those methods (for a
notebook widget or a GUI). A reporter with LiberTEM's interface (``start``, ``update`` and
``end`` taking a :class:`~udfkit.common.progress.ProgressState`) is accepted too.
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

    def written(self, nbytes: int) -> None:
        """Called in runs with results on disk (``out=``): ``nbytes`` written so far.
        Optional: reporters without this method are not told."""


class TqdmReporter(ProgressReporter):
    """A tqdm progress bar of frames (and of the bytes written, with results on disk)."""

    def __init__(self, desc: str = "udfkit"):
        self.desc = desc
        self._bar = None

    def start(self, total_frames):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total_frames, desc=self.desc, unit="frame", leave=True)

    def advance(self, frames):
        if self._bar is not None:
            self._bar.update(frames)

    def written(self, nbytes):
        if self._bar is not None:
            self._bar.set_postfix_str(f"{_size(nbytes)} written")

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _size(n: int) -> str:
    """``n`` bytes in a short human form.

    >>> _size(512), _size(3 << 20), _size(5 << 30)
    ('512 B', '3.0 MiB', '5.00 GiB')
    """
    if n < 1 << 10:
        return f"{n} B"
    if n < 1 << 20:
        return f"{n / 2**10:.1f} KiB"
    if n < 1 << 30:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 2**30:.2f} GiB"


def make_reporter(progress):
    """``False``/``None`` → None, ``True`` → :class:`TqdmReporter`, else the object itself."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return TqdmReporter()
    if not callable(getattr(progress, "advance", None)) and all(
            callable(getattr(progress, name, None)) for name in ("start", "update", "end")):
        return _StateReporter(progress)
    for name in ("start", "advance", "close"):
        if not callable(getattr(progress, name, None)):
            raise TypeError(f"progress: expected True/False or a reporter with start/advance/close, "
                            f"got {progress!r}")
    return progress


class _StateReporter(ProgressReporter):
    """Drives a LiberTEM-style reporter (``start/update/end`` of a ``ProgressState``)."""

    def __init__(self, target):
        import uuid

        self.target = target
        self.total = 0
        self.done = 0
        self.id = uuid.uuid4().hex
        self._ended = False

    def _state(self):
        from ..common.progress import ProgressState

        return ProgressState(self.done, self.total, 0, 0, 0, self.id)

    def start(self, total_frames):
        self.total = int(total_frames)
        self.target.start(self._state())

    def advance(self, frames):
        self.done += frames
        self.target.update(self._state())

    def close(self):
        if not self._ended:
            self._ended = True
            self.target.end(self._state())
