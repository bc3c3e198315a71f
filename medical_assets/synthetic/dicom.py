"""A deterministic synthetic DICOM corpus of CT, MR, radiography and ultrasound studies, resembling no real person."""

from __future__ import annotations

import random
import uuid
import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from io import BytesIO
from typing import NamedTuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
)

from medical_assets.synthetic.dicom_pixels import render_pixels
from medical_assets.synthetic.dicom_reference import (
    EQUIPMENT,
    FIRST_PROTOCOLS,
    PROTOCOL_WEIGHTS,
    PROTOCOLS,
    SERIES_TRANSFER_SYNTAXES,
    FilePlan,
    Protocol,
)
from medical_assets.synthetic.hl7_patients import PATIENT_POOL_SIZE, synthetic_patient
from medical_assets.synthetic.naming import NumberedFileNames

# Raised whenever a seed renders other bytes than before, so that a landing corpus of an older
# version is told apart from the current one. 2: IssuerOfPatientID, as the HL7 feed names the issuer.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class DicomCorpusSettings:
    """How many files the corpus holds, and the seed that fixes them (the HL7 corpus's, to share its patients)."""

    total_files: int = 300
    seed: int = 20240101

    def __post_init__(self) -> None:
        if self.total_files < 0:
            raise ValueError(f"total_files must be 0 or more, got {self.total_files}")


def file_name(file_index: int) -> str:
    """The file's name, zero-padded so that names sort in study, series and instance order."""
    return _FILE_NAMES.name(file_index)


def is_synthetic_file_name(name: str) -> bool:
    """True for names `file_name` gives, so a new corpus can replace an old one and nothing else."""
    return _FILE_NAMES.is_ours(name)


_FILE_NAMES = NumberedFileNames("pacs_demo_", ".dcm")


def render_file(settings: DicomCorpusSettings, file_index: int) -> bytes:
    """The bytes of one DICOM file (preamble, file meta, data set), one image or one cine clip.

    It depends only on the settings and the index, so any file renders alone, in any process, to
    the same bytes. Files come in studies of one or more series of several images, for patients
    of the synthetic HL7 corpus's pool (same seed, same medical record numbers and their issuers,
    names and birth dates), at the patient's facility. Pixel data is drawn from smooth anatomical
    shapes and seeded noise, stored as the modality stores it: CT as signed 16-bit with a rescale
    to HU, MR and radiographs as 12 bits in 16, ultrasound as RGB with burned-in annotation.
    Series use explicit or implicit VR little endian, deflated explicit VR, or RLE lossless.
    """
    layout = _layout(settings)
    if not 0 <= file_index < len(layout):
        raise IndexError(f"file_index {file_index} is outside 0..{len(layout) - 1} ({settings.total_files} files)")
    plan = layout[file_index]
    study = _study(settings.seed, plan.study_number, plan.protocol)
    dataset = _dataset(settings.seed, file_index, plan, study)
    if dataset.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        return _deflated_file(dataset)
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def _deflated_file(dataset: Dataset) -> bytes:
    """The file in the deflated transfer syntax (PS3.5 A.5: the data set encoded as explicit VR little
    endian, then deflated), written here because pydicom deflates at zlib's default level: on noisy
    pixels level 1 is far faster for a file barely larger, and the corpus is generated on every first run."""
    head = DicomBytesIO()
    head.is_implicit_VR, head.is_little_endian = False, True
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, dataset.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_implicit_VR, body.is_little_endian = False, True
    write_dataset(body, dataset)
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(body.getvalue()) + compressor.flush()
    return head.getvalue() + deflated + (b"\x00" if len(deflated) % 2 else b"")


@lru_cache(maxsize=8)
def _layout(settings: DicomCorpusSettings) -> tuple[FilePlan, ...]:
    """Every file's place in its study and series, in file order; the last study may be cut short."""
    rng = random.Random(f"{settings.seed}:dicom layout")
    names, weights = tuple(PROTOCOL_WEIGHTS), tuple(PROTOCOL_WEIGHTS.values())
    plans: list[FilePlan] = []
    series_count = 0
    study_number = 0
    while len(plans) < settings.total_files:
        if study_number < len(FIRST_PROTOCOLS):
            protocol = PROTOCOLS[FIRST_PROTOCOLS[study_number]]
        else:
            protocol = PROTOCOLS[rng.choices(names, weights)[0]]
        for series_number, series in enumerate(protocol.series, start=1):
            instances = rng.randint(*series.images)
            transfer_syntax = SERIES_TRANSFER_SYNTAXES[series_count % len(SERIES_TRANSFER_SYNTAXES)]
            series_count += 1
            plans.extend(
                FilePlan(study_number, protocol, series_number, series, instances, instance, transfer_syntax)
                for instance in range(1, instances + 1)
            )
        study_number += 1
    return tuple(plans[: settings.total_files])


class _Study(NamedTuple):
    patient_id: str
    patient_id_issuer: str  # IssuerOfPatientID: the HL7 feed's PID-3.4 for this patient; empty to leave it out
    patient_name: str
    birth_date: str
    sex: str
    age: str  # PatientAge, e.g. 045Y
    character_set: str
    institution: str
    study_date: str
    study_time: str
    accession_number: str
    study_uid: str
    manufacturer: str
    model: str
    station: str


# Admissions in the HL7 corpus run from 2024-01-01 to 2025-12-15; imaging happens in that span.
_FIRST_STUDY_DAY = date(2024, 1, 1)
_STUDY_DAYS = (date(2025, 12, 15) - _FIRST_STUDY_DAY).days


@lru_cache(maxsize=64)
def _study(seed: int, study_number: int, protocol: Protocol) -> _Study:
    rng = random.Random(f"{seed}:dicom study:{study_number}")
    patient = synthetic_patient(seed, rng.randrange(PATIENT_POOL_SIZE))
    study_day = _FIRST_STUDY_DAY + timedelta(days=rng.randrange(_STUDY_DAYS))
    birth = date(int(patient.birth_date[:4]), int(patient.birth_date[4:6]), int(patient.birth_date[6:]))
    age_years = study_day.year - birth.year - ((study_day.month, study_day.day) < (birth.month, birth.day))
    name = f"{patient.family_name}^{patient.given_name}"
    manufacturer, model = rng.choice(EQUIPMENT[protocol.modality])
    return _Study(
        patient_id=patient.medical_record_number,
        # As the HL7 feed names the issuer, so that (issuer, MRN) joins; where the feed names none, the
        # file names none either and both sides fall back to the facility (MSH-4, InstitutionName).
        patient_id_issuer=patient.issuer or "",
        patient_name=name,
        birth_date=patient.birth_date,
        sex={"F": "F", "M": "M", "O": "O"}.get(patient.sex, ""),  # DICOM has no U: unknown is empty
        age=f"{max(age_years, 0):03d}Y",
        # Latin-1 covers the pool's plain names; the accented ones need UTF-8.
        character_set="ISO_IR 100" if name.isascii() else "ISO_IR 192",
        institution=patient.facility,
        study_date=study_day.strftime("%Y%m%d"),
        study_time=f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}",
        accession_number=f"ACC{seed % 100:02d}{study_number + 1:07d}",
        study_uid=_uid(seed, "study", study_number),
        manufacturer=manufacturer,
        model=model,
        station=f"{protocol.modality}{rng.randrange(1, 5):02d}",
    )


def _uid(seed: int, *parts: object) -> str:
    """A valid, unique and repeatable UID: 2.25 and the integer of a name-based UUID of the seed and the parts.

    pydicom's generate_uid ignores its entropy sources under the 2.25 root (it draws a random
    UUID), and any other root needs an organisation's registration: uuid5 is both repeatable
    and rootless.
    """
    name = ":".join(["dicom", str(seed), *map(str, parts)])
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "medical-assets:synthetic")
# Names this generator in every file meta instead of pydicom's version, so the bytes stay the
# same when pydicom is upgraded.
_IMPLEMENTATION_CLASS_UID = f"2.25.{uuid.uuid5(_UID_NAMESPACE, 'dicom generator').int}"
_IMPLEMENTATION_VERSION_NAME = "MEDASSETS_SYN1"


def _dataset(seed: int, file_index: int, plan: FilePlan, study: _Study) -> Dataset:
    protocol, series = plan.protocol, plan.series
    multi_frame = series.frames > 1
    sop_class = UltrasoundMultiFrameImageStorage if multi_frame else protocol.sop_class_uid
    sop_instance_uid = _uid(seed, "instance", file_index)
    series_uid = _uid(seed, "series", plan.study_number, plan.series_number)

    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = sop_class
    file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # set to the series' syntax once the pixels are in
    file_meta.ImplementationClassUID = _IMPLEMENTATION_CLASS_UID
    file_meta.ImplementationVersionName = _IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.file_meta = file_meta
    ds.SpecificCharacterSet = study.character_set
    ds.ImageType = ["ORIGINAL", "PRIMARY", series.orientation or protocol.body_part]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.study_date
    ds.StudyTime = study.study_time
    ds.SeriesTime = _later(study.study_time, 60 * plan.series_number)
    ds.ContentTime = _later(study.study_time, 60 * plan.series_number + 5 * plan.instance_number)
    ds.AccessionNumber = study.accession_number
    ds.Modality = protocol.modality
    ds.Manufacturer = study.manufacturer
    ds.InstitutionName = study.institution
    ds.ReferringPhysicianName = ""
    ds.StationName = study.station
    ds.StudyDescription = protocol.study_description
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = study.model
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    if study.patient_id_issuer:
        ds.IssuerOfPatientID = study.patient_id_issuer
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    ds.PatientAge = study.age
    ds.BodyPartExamined = protocol.body_part
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"{plan.study_number + 1}"
    ds.SeriesNumber = plan.series_number
    ds.InstanceNumber = plan.instance_number
    ds.BurnedInAnnotation = "NO"
    if protocol.modality in ("CT", "MR"):
        ds.FrameOfReferenceUID = _uid(seed, "frame of reference", plan.study_number, plan.series_number)
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "HFS"

    rng = np.random.default_rng([seed, file_index])
    pixels = render_pixels(ds, plan, rng)
    _set_pixel_data(ds, pixels, plan.transfer_syntax)
    return ds


def _later(hhmmss: str, seconds: int) -> str:
    total = (int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:]) + seconds) % 86_400
    return f"{total // 3600:02d}{total % 3600 // 60:02d}{total % 60:02d}"


def _set_pixel_data(ds: Dataset, pixels: np.ndarray, transfer_syntax: UID) -> None:
    if transfer_syntax == RLELossless:
        ds.compress(RLELossless, pixels, generate_instance_uid=False)
    else:
        ds.PixelData = pixels.tobytes()
        ds.file_meta.TransferSyntaxUID = transfer_syntax
