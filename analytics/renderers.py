"""A CSV renderer for DRF: ``?format=csv`` or ``Accept: text/csv`` on views that offer it.

The view says which columns, in which order (``csv_columns``), so the header is the same
whether or not there are rows; each row is a flat dict (nested values are the view's to
flatten).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer

# A cell starting with one of these is a formula to a spreadsheet (CSV injection): such
# text is written with a leading apostrophe, which spreadsheets show as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        view = (renderer_context or {}).get("view")
        columns: list[str] = list(getattr(view, "csv_columns", []))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in data or []:
            writer.writerow({name: _cell(row.get(name)) for name in columns})
        return out.getvalue().encode(self.charset)
