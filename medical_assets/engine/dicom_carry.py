"""Whether the published DICOM export still stands after a night that brought HL7 files only.

The export is made from the DICOM tables and, of the rest of the data, only from who is 90+ (a
patient 90+ at any HL7 or DICOM event loses their images' PatientAge) and from the vocabulary of
the DICOM columns, which the DICOM tables alone decide. So when the DICOM tables are those it was
made from, every HL7 part it saw is still there unchanged, and the DICOM patients 90+ are the same
patients, exporting again would write the same files. What the night can still change is what the
leak check looks for: the new HL7 parts' identifiers, which the published files are searched for
(`leak_gate.rescan_published`) before they are carried over.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow.compute as pc
import pyarrow.parquet as pq

from medical_assets.engine.census_parts import census_by_part
from medical_assets.engine.deid_jobs import Census, census_of
from medical_assets.privacy.patients import dicom_patient_identity
from medical_assets.storage import Location

DICOM_INPUTS = ("phi/dicom_images", "phi/dicom_thumbnails")
# The digest of the DICOM patients 90+ the published export was made with (PHI zone: it is
# derived from patient identities).
OLD_PATIENTS_FILE = ("_census", "dicom_old_patients.json")
_IDENTITY_COLUMNS = ("patient_id", "patient_id_issuer", "institution_name")


@dataclass(frozen=True)
class DicomBasis:
    """What the published export was made from, beyond its settings and code."""

    inputs: dict[str, str]  # DICOM_INPUTS -> folder digest
    hl7_parts: dict[str, str]  # HL7 part group name -> digest of its PHI parts
    old_patients: str  # digest of the DICOM patients 90+

    def details(self) -> dict:
        """For the step's record (digests of files only; the patients' digest stays in the PHI zone)."""
        return {"dicom inputs": self.inputs, "hl7 parts": self.hl7_parts}


def export_census(phi: Location, min_patients: int, scope: str) -> tuple[Census, dict[str, str]]:
    """The census the export needs (every patient 90+; the vocabulary of the DICOM parts alone) from
    the parts' kept census rows, and the digest of each HL7 part group. One Ray job, over the parts
    not seen before (`census_by_part`)."""
    rows, hl7_digests = census_by_part(phi, min_patients, scope)
    hl7_evidence = pc.and_(pc.equal(rows.column("kind"), "evidence"), pc.starts_with(rows.column("part"), "hl7:"))
    return census_of(rows.filter(pc.invert(hl7_evidence)), min_patients), hl7_digests


def basis_of(phi: Location, census: Census, hl7_digests: Mapping[str, str], inputs_seen: Mapping[str, str], scope: str) -> DicomBasis:
    old = old_patients_digest(phi, census.over_89, scope)
    return DicomBasis({name: inputs_seen.get(name, "") for name in DICOM_INPUTS}, dict(hl7_digests), old)


def old_patients_digest(phi: Location, over_89: Mapping[str, object], scope: str) -> str:
    """A digest of the DICOM patients among `over_89` (the census's patients 90+)."""
    images = phi.child("dicom_images")
    patients: set[str] = set()
    if images.exists():
        table = pq.read_table(images.path, filesystem=images.filesystem, columns=list(_IDENTITY_COLUMNS))
        triples = set(zip(*(table.column(name).to_pylist() for name in _IDENTITY_COLUMNS)))
        patients = {identity for identity in (dicom_patient_identity(*t, scope) for t in triples) if identity in over_89}
    digest = hashlib.sha256()
    for patient in sorted(patients):
        digest.update(patient.encode() + b"\x00")
    return digest.hexdigest()


def save_old_patients(phi: Location, digest: str) -> None:
    phi.child(*OLD_PATIENTS_FILE).write_bytes_atomically(json.dumps({"digest": digest}).encode())


def load_old_patients(phi: Location) -> str | None:
    location = phi.child(*OLD_PATIENTS_FILE)
    if not location.exists():
        return None
    try:
        return json.loads(location.read_bytes()).get("digest")
    except (ValueError, OSError):
        return None


def new_hl7_parts(earlier: Mapping, now: DicomBasis, saved_old_patients: str | None) -> tuple[list[str] | None, str]:
    """The HL7 parts added since the export recorded in `earlier` (its record's details) when it
    still stands, with "" ; else None and why it does not."""
    if earlier.get("dicom inputs") != now.inputs:
        return None, "the DICOM tables changed"
    recorded = earlier.get("hl7 parts")
    if recorded is None or saved_old_patients is None:
        return None, "the basis of the last export is not kept"
    changed = sorted(name for name, digest in recorded.items() if now.hl7_parts.get(name) != digest)
    if changed:
        return None, f"{len(changed)} HL7 part(s) it was made with changed or are gone"
    if saved_old_patients != now.old_patients:
        return None, "the new data changed which DICOM patients are 90+"
    return sorted(set(now.hl7_parts) - set(recorded)), ""
