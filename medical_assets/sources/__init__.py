"""Sources: the ways files arrive in a landing folder, one module each behind the `Source` interface.

A source puts whole files of one kind ("hl7" or "dicom") into that kind's landing folder and
knows nothing of parsing; what the pipeline then does with the files (manifest, parse plan,
ledger) is `medical_assets.landing`'s. Every write goes through `folder.deliver`: the file appears
complete or not at all, so the sensor and the manifest never see half of one.

- `folder`: the landing folder itself, filled by anything outside the pipeline; it also says
  which of its files are data (by extension, or by a content test such as
  `medical_assets.dicom.is_dicom_candidate` passed to `list_landing_files`).
- `synthetic`: the demo generators, whose files a Ray job (`medical_assets.engine.corpus`) renders
  and delivers.
- `mllp_server` (with `mllp_framing`, `hl7_acks`, `hl7_spool`): the HL7 listener. A message is
  appended to an open segment under `_mllp/`, fsynced (one fsync for all connections' messages of
  the moment), and only then acknowledged; segments roll by size or age into
  `mllp/<listener>/<day>/` by an atomic rename.
- `dicom_listener`: the DICOM storage service (C-STORE SCP); each instance goes through
  `folder.deliver(..., durable=True)` into `cstore/<calling AE>/<study>/` before its success status.
- `arrivals`: what the listeners delivered, as counts, for the landing assets' metadata.

Either way the file is then in the landing folder like any other, and the `new_landing_files` sensor
requests a run on its next tick. Adding a source touches its own module and one line of `SOURCES`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from medical_assets.sources import folder, synthetic
from medical_assets.sources.arrivals import DICOM_STORAGE_SERVICE, MLLP_LISTENER


@runtime_checkable
class Source(Protocol):
    """A way for files of one kind to arrive in that kind's landing folder."""

    @property
    def name(self) -> str: ...  # unique among SOURCES

    @property
    def kind(self) -> str: ...  # "hl7" or "dicom": the landing folder it delivers into

    @property
    def description(self) -> str: ...  # one sentence, for people


SOURCES: tuple[Source, ...] = (
    folder.HL7_LANDING_FOLDER,
    folder.DICOM_LANDING_FOLDER,
    synthetic.SYNTHETIC_HL7,
    synthetic.SYNTHETIC_DICOM,
    MLLP_LISTENER,
    DICOM_STORAGE_SERVICE,
)
