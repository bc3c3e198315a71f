"""The synthetic generators as sources: how each demo corpus is described to the job that writes it."""

from __future__ import annotations

import importlib
import operator
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SyntheticCorpus:
    """A generator as the job sees it: picklable settings and module-level functions."""

    kind: str  # "hl7", "dicom": names the marker file
    settings: Any  # a frozen dataclass; its fields identify the corpus
    file_count: int
    file_name: Callable[[int], str]
    render_file: Callable[[Any, int], bytes]
    is_synthetic_file_name: Callable[[str], bool]

    @property
    def marker_name(self) -> str:
        return f"_synthetic_{self.kind}_corpus.json"

    def fingerprint(self) -> dict:
        # The generator's version too: a corpus written by an older generator is written again.
        version = getattr(sys.modules[self.render_file.__module__], "GENERATOR_VERSION", 1)
        return {"generator": self.render_file.__module__, "generator_version": version, **asdict(self.settings)}


@dataclass(frozen=True)
class SyntheticSource:
    """Deterministic demo files of one kind, rendered and delivered by a Ray job (`engine.corpus`)."""

    name: str
    kind: str
    description: str
    # The module with `file_name`, `render_file` and `is_synthetic_file_name`, named rather than
    # imported: the DICOM generator loads pydicom and numpy, which every process that unpickles a
    # LandingFile (and so imports this package) would otherwise pay for.
    generator: str
    file_count: Callable[[Any], int]  # of the generator's settings

    def corpus(self, settings: Any) -> SyntheticCorpus:
        module = importlib.import_module(self.generator)
        return SyntheticCorpus(
            self.kind, settings, self.file_count(settings), module.file_name, module.render_file,
            module.is_synthetic_file_name,
        )


SYNTHETIC_HL7 = SyntheticSource(
    "synthetic_hl7",
    "hl7",
    "Synthetic HL7 v2 messages (ADT^A01, ORU^R01, RDE^O11, ADT^A03) for demos and tests",
    "medical_assets.synthetic.hl7",
    operator.methodcaller("file_count"),
)
SYNTHETIC_DICOM = SyntheticSource(
    "synthetic_dicom",
    "dicom",
    "Synthetic DICOM studies (CT, MR, CR/DX, US) of the synthetic HL7 patients, for demos and tests",
    "medical_assets.synthetic.dicom",
    operator.attrgetter("total_files"),
)
