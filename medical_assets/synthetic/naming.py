"""File names of a synthetic corpus: sortable, and recognisable so a new corpus replaces only its own files."""

from dataclasses import dataclass


@dataclass(frozen=True)
class NumberedFileNames:
    prefix: str
    suffix: str

    def name(self, file_index: int) -> str:
        """Zero-padded, so that names sort in generation order."""
        return f"{self.prefix}{file_index:05d}{self.suffix}"

    def is_ours(self, name: str) -> bool:
        stem = name.removeprefix(self.prefix).removesuffix(self.suffix)
        return name.startswith(self.prefix) and name.endswith(self.suffix) and stem.isdigit()
