"""Id → text lookups over a collection or queries `Dataset` (or a plain mapping), for id triples and qrels."""

from __future__ import annotations

from collections.abc import Mapping

from datasets import Dataset


class TextLookup(Mapping):
    """Read-only mapping `id -> text` over a `Dataset` with columns `id` and `text` (or over a dict); `column`
    names another string column to look up (e.g. `title`).

    Rows stay in the memory-mapped Arrow table; only the id → row index is held in memory. When the ids are the
    row numbers themselves ("0", "1", ... as in MS MARCO's collection.tsv) no index is built at all.

    Example:
        >>> lookup = TextLookup(Dataset.from_dict({"id": ["7", "9"], "text": ["a", "b"]}))
        >>> lookup["9"]
        'b'
    """

    def __init__(self, source: Dataset | Mapping[str, str], name: str = "collection", column: str = "text") -> None:
        self.name, self._column = name, column
        if isinstance(source, Dataset):
            missing = {"id", column} - set(source.column_names)
            if missing:
                raise ValueError(f"{name} dataset needs columns 'id' and {column!r}; it has {source.column_names}")
            self._dataset = source.select_columns(["id", column])
            ids = self._dataset["id"]
            if all(identifier == str(row) for row, identifier in enumerate(ids)):
                self._rows: dict[str, int] | None = None
            else:
                self._rows = {}
                for row, identifier in enumerate(ids):
                    if identifier in self._rows:
                        raise ValueError(
                            f"{name} has the id {identifier!r} twice (rows {self._rows[identifier]}, {row})"
                        )
                    self._rows[identifier] = row
            self._length = len(ids)
            self._mapping: Mapping[str, str] | None = None
        else:
            self._mapping = source
            self._length = len(source)

    def _row(self, identifier: str) -> int:
        if self._rows is None:
            if not identifier.isdigit() or int(identifier) >= self._length or str(int(identifier)) != identifier:
                raise KeyError(identifier)
            return int(identifier)
        return self._rows[identifier]

    def __getitem__(self, identifier: str) -> str:
        identifier = str(identifier)
        if self._mapping is not None:
            return self._mapping[identifier]
        return self._dataset[self._row(identifier)][self._column]

    def __contains__(self, identifier: object) -> bool:
        if self._mapping is not None:
            return str(identifier) in self._mapping
        try:
            self._row(str(identifier))
        except KeyError:
            return False
        return True

    def __iter__(self):
        if self._mapping is not None:
            return iter(self._mapping)
        return iter(self._dataset["id"])

    def __len__(self) -> int:
        return self._length


def as_lookup(source: Dataset | Mapping[str, str], name: str) -> Mapping[str, str]:
    """`source` as an id → text mapping (a `TextLookup` is returned unchanged)."""
    return source if isinstance(source, TextLookup) else TextLookup(source, name)
