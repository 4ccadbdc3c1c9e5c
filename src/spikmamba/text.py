"""Values shown to people in messages: bounded, whatever they hold.

Why: an error that echoed ``{value!r}`` of a YAML alias bomb expanded it (38 s, 2.7 GB, a 157 MB
message), and a 200 MB model name was printed whole. :func:`shown` abbreviates each level of a
value (``reprlib``) before cutting the text, so its cost is bounded too."""
from __future__ import annotations

import reprlib

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 8, 8, 8, 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 200, 200, 60


def shown(value, limit: int = 120) -> str:
    """``repr(value)``, abbreviated and cut to about ``limit`` characters (the length said when cut)."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value):,} characters)"
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
