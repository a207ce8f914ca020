"""Static files (the browser SDK, the admin's CSS) served by the app itself, DEBUG or not."""

from __future__ import annotations

from pathlib import Path

from whitenoise.middleware import WhiteNoiseMiddleware  # type: ignore[import-untyped]


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]  # untyped base
    """WhiteNoise, reading STATIC_ROOT only once ``collectstatic`` has made it: before that
    the files come from the finders (``WHITENOISE_USE_FINDERS``), and WhiteNoise's warning
    about the missing directory at every start would only be noise."""

    def add_files(self, root: str, prefix: str | None = None) -> None:
        if not Path(root).is_dir():
            return
        super().add_files(root, prefix)
