"""Progress bars: tqdm when installed and the job is long, a silent stand-in otherwise."""
from __future__ import annotations

import contextlib
import sys


class _Quiet:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, refresh: bool = True, **kw) -> None:
        pass


@contextlib.contextmanager
def progress_bar(enabled: bool, **kw):
    """``with progress_bar(big_job, desc=..., total=...) as bar: bar.update()``.

    The bar shows only once the job has run for ``delay`` seconds (default 1.5 s), so quick
    steps stay silent and long ones report progress."""
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            kw.setdefault("delay", 1.5)
            bar = tqdm(file=sys.stderr, leave=False, **kw)
            try:
                yield bar
            finally:
                bar.close()
            return
    yield _Quiet()
