"""Which parts of the published DICOM export still stand after a night of new files.

An image's export depends on its own PHI part and, of the rest of the data, only on who is 90+ (a
patient 90+ at any HL7 or DICOM event loses their images' PatientAge) and on the vocabulary of the
DICOM columns. So when every HL7 and DICOM part an export was made with is unchanged, and the
DICOM patients 90+ and the DICOM vocabulary are the same, its parts would be exported again
byte for byte: a night of HL7 files keeps the export whole, a night with new images exports only
their parts and copies the others (`plan_export`). What a night can still change is what the leak
check looks for: the kept files are searched for the new HL7 parts' identifiers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow.compute as pc
import pyarrow.parquet as pq

from medical_assets.dicom.tables import TABLES as DICOM_TABLES
from medical_assets.engine.census_parts import census_by_part
from medical_assets.engine.deid_jobs import Census, census_of
from medical_assets.engine.part_groups import group_part_name, part_digest, phi_part_groups
from medical_assets.privacy.patients import dicom_patient_identity
from medical_assets.storage import Location, TablePublication, read_table, table_files

DICOM_INPUTS = ("phi/dicom_images", "phi/dicom_thumbnails")
# Digests of the DICOM patients 90+ and of the DICOM vocabulary the published export was made with
# (PHI zone: they are derived from patient identities and rare values).
PUBLISHED_FILE = ("_census", "dicom_published.json")
_IDENTITY_COLUMNS = ("patient_id", "patient_id_issuer", "institution_name")


@dataclass(frozen=True)
class DicomBasis:
    """What an export is made from, beyond its settings and code."""

    inputs: dict[str, str]  # DICOM_INPUTS -> folder digest
    hl7_parts: dict[str, str]  # HL7 part group name -> digest of its PHI parts
    dicom_parts: dict[str, str]  # DICOM part group name -> digest of its PHI parts
    old_patients: str  # digest of the DICOM patients 90+
    vocabulary: str  # digest of the DICOM columns' vocabulary

    def details(self, counts_by_part: Mapping[str, Mapping[str, int]]) -> dict:
        """For the step's record: digests of files and each DICOM part's rows (the digests of
        patients and vocabulary stay in the PHI zone, `save_published`)."""
        parts = {name: {"digest": digest, "counts": dict(counts_by_part.get(name, {}))} for name, digest in self.dicom_parts.items()}
        return {"dicom inputs": self.inputs, "hl7 parts": self.hl7_parts, "dicom parts": parts}


def export_census(phi: Location, min_patients: int, scope: str) -> tuple[Census, dict[str, str]]:
    """The census the export needs (every patient 90+; the vocabulary of the DICOM parts alone) from
    the parts' kept census rows, and the digest of each HL7 part group. One Ray job, over the parts
    not seen before (`census_by_part`)."""
    rows, hl7_digests = census_by_part(phi, min_patients, scope)
    hl7_evidence = pc.and_(pc.equal(rows.column("kind"), "evidence"), pc.starts_with(rows.column("part"), "hl7:"))
    return census_of(rows.filter(pc.invert(hl7_evidence)), min_patients), hl7_digests


def basis_of(phi: Location, census: Census, hl7_digests: Mapping[str, str], inputs_seen: Mapping[str, str], scope: str) -> DicomBasis:
    groups = phi_part_groups(phi, ["dicom_images", "dicom_thumbnails"], DICOM_TABLES)
    vocabulary = hashlib.sha256()
    for column in sorted(census.vocabulary):
        for value in sorted(census.vocabulary[column]):
            vocabulary.update(f"{column}\x1f{value}\x1e".encode())
    return DicomBasis(
        {name: inputs_seen.get(name, "") for name in DICOM_INPUTS},
        dict(hl7_digests),
        {group_part_name(group): part_digest(group) for group in groups},
        old_patients_digest(phi, census.over_89, scope),
        vocabulary.hexdigest(),
    )


def old_patients_digest(phi: Location, over_89: Mapping[str, object], scope: str) -> str:
    """A digest of the DICOM patients among `over_89` (the census's patients 90+)."""
    images = phi.child("dicom_images")
    patients: set[str] = set()
    if images.exists():
        table = read_table(images, columns=list(_IDENTITY_COLUMNS))
        triples = set(zip(*(table.column(name).to_pylist() for name in _IDENTITY_COLUMNS)))
        patients = {identity for identity in (dicom_patient_identity(*t, scope) for t in triples) if identity in over_89}
    digest = hashlib.sha256()
    for patient in sorted(patients):
        digest.update(patient.encode() + b"\x00")
    return digest.hexdigest()


def save_published(phi: Location, basis: DicomBasis) -> None:
    location = phi.child(*PUBLISHED_FILE)
    location.write_bytes_atomically(json.dumps({"old patients": basis.old_patients, "vocabulary": basis.vocabulary}).encode())


def load_published(phi: Location) -> dict | None:
    location = phi.child(*PUBLISHED_FILE)
    if not location.exists():
        return None
    try:
        return json.loads(location.read_bytes())
    except (ValueError, OSError):
        return None


@dataclass(frozen=True)
class ExportPlan:
    """What a run does with the published export: keep it whole (`keep`), or export `computed` and
    copy `carried` (DICOM part names) as they are, or export everything (`computed` None)."""

    keep: bool
    carried: list[str]
    computed: list[str] | None
    hl7_parts_read: list[str]  # HL7 parts new since the export: what the kept files are searched for
    why: str


def plan_export(earlier: Mapping | None, now: DicomBasis, published: Mapping | None) -> ExportPlan:
    """`earlier`: the details of the step's record when only inputs changed since (else None);
    `published`: `load_published`. Old parts stand when every HL7 and DICOM part they were made
    with is unchanged and neither the DICOM patients 90+ nor the DICOM vocabulary moved."""

    def everything(why: str) -> ExportPlan:
        return ExportPlan(False, [], None, [], why)

    if earlier is None:
        return everything("every image: no earlier export to build on")
    recorded_hl7, recorded_dicom = earlier.get("hl7 parts"), earlier.get("dicom parts")
    if recorded_hl7 is None or recorded_dicom is None or published is None:
        return everything("every image: the basis of the last export is not kept")
    changed = sorted(name for name, digest in recorded_hl7.items() if now.hl7_parts.get(name) != digest)
    if changed:
        return everything(f"every image: {len(changed)} HL7 part(s) it was made with changed or are gone")
    changed = sorted(name for name, part in recorded_dicom.items() if now.dicom_parts.get(name) != part.get("digest"))
    if changed:
        return everything(f"every image: {len(changed)} DICOM part(s) it was made with changed or are gone")
    if published.get("old patients") != now.old_patients:
        return everything("every image: the new data changed which DICOM patients are 90+")
    if published.get("vocabulary") != now.vocabulary:
        return everything("every image: the new images changed the DICOM vocabulary")
    hl7_new = sorted(set(now.hl7_parts) - set(recorded_hl7))
    dicom_new = sorted(set(now.dicom_parts) - set(recorded_dicom))
    if not dicom_new:
        if earlier.get("dicom inputs") != now.inputs:
            return everything("every image: the DICOM tables changed")
        return ExportPlan(True, sorted(recorded_dicom), [], hl7_new, "")
    return ExportPlan(False, sorted(recorded_dicom), dicom_new, hl7_new, f"{len(dicom_new)} new DICOM part(s)")


def stage_carried(deid: Location, files_folder: str, publication: TablePublication, names: list[str]) -> set[str]:
    """Carry the published de-identified DICOM files of the parts `names` (the `deid_file` column of
    their dicom_images parts) over as they are (`TablePublication.carry_file`: hard-linked into the
    staging on a local disk, kept in place on an object store). Returns the paths that stand for
    them: the leak check searches those for the night's new identifiers."""
    carried: set[str] = set()
    wanted = set(names)  # a part whose images were all kept out has no rows, and no file
    for part in table_files(deid.child("dicom_images")):
        if part.name not in wanted:
            continue
        for relative in pq.read_table(part.path, filesystem=part.filesystem, columns=["deid_file"]).column("deid_file").to_pylist():
            carried.add(publication.carry_file(files_folder, relative).path)
    return carried
