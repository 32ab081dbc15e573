"""The UTF-8 byte-order mark: every reader of this package drops it at the start of a file.

Editors and spreadsheet exports on Windows begin UTF-8 files with the bytes ``EF BB BF``. Decoded as UTF-8 they
become U+FEFF glued to the first field, so the first query id reads ``"\\ufeff1048585"``: it matches no judgment,
and the query is silently lost or split. Stripping the mark (what Python's ``utf-8-sig`` codec does) keeps the file
meaning what its author sees; a U+FEFF anywhere else is left as text.
"""

from __future__ import annotations

UTF8_BOM = b"\xef\xbb\xbf"


def strip_bom(raw: bytes, line_number: int) -> bytes:
    """``raw`` without a UTF-8 byte-order mark when it is the file's first line (1-based ``line_number``)."""
    return raw[len(UTF8_BOM) :] if line_number == 1 and raw.startswith(UTF8_BOM) else raw
