"""A deterministic synthetic DICOM corpus of CT, MR, radiography and ultrasound studies, resembling no real person."""

from __future__ import annotations

import math
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
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from medical_assets.synthetic.naming import NumberedFileNames
from medical_assets.synthetic.hl7 import PATIENT_POOL_SIZE, synthetic_patient


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
    pixels level 1 is 8 times faster for a file 1% larger, and the corpus is generated on every first run."""
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


class _SeriesPlan(NamedTuple):
    description: str
    images: tuple[int, int]  # fewest and most instances
    frames: int  # frames per instance: more than one makes a cine clip
    orientation: str  # AXIAL, SAGITTAL, CORONAL, or the radiographic view


class _Protocol(NamedTuple):
    modality: str
    sop_class_uid: UID
    study_description: str
    body_part: str
    anatomy: str  # the key of the shapes the pixel data is drawn from
    series: tuple[_SeriesPlan, ...]


_PROTOCOLS = {
    "CT_CHEST": _Protocol(
        "CT", CTImageStorage, "CT CHEST WITHOUT CONTRAST", "CHEST", "chest",
        (_SeriesPlan("AXIAL 5.0 MM STANDARD", (6, 10), 1, "AXIAL"),
         _SeriesPlan("AXIAL 5.0 MM LUNG", (4, 6), 1, "AXIAL")),
    ),
    "CT_HEAD": _Protocol(
        "CT", CTImageStorage, "CT HEAD WITHOUT CONTRAST", "HEAD", "head",
        (_SeriesPlan("AXIAL 5.0 MM BRAIN", (6, 10), 1, "AXIAL"),),
    ),
    "CT_ABDOMEN": _Protocol(
        "CT", CTImageStorage, "CT ABDOMEN PELVIS WITH CONTRAST", "ABDOMEN", "abdomen",
        (_SeriesPlan("PORTAL VENOUS 5.0 MM", (8, 12), 1, "AXIAL"),),
    ),
    "MR_BRAIN": _Protocol(
        "MR", MRImageStorage, "MR BRAIN WITHOUT CONTRAST", "HEAD", "brain",
        (
            _SeriesPlan("AX T2 FSE", (5, 8), 1, "AXIAL"),
            _SeriesPlan("AX T1 SE", (5, 8), 1, "AXIAL"),
            _SeriesPlan("AX FLAIR", (4, 6), 1, "AXIAL"),
        ),
    ),
    "MR_SPINE": _Protocol(
        "MR", MRImageStorage, "MR LUMBAR SPINE WITHOUT CONTRAST", "LSPINE", "spine",
        (_SeriesPlan("SAG T2 FSE", (5, 7), 1, "SAGITTAL"), _SeriesPlan("SAG T1 FSE", (5, 7), 1, "SAGITTAL")),
    ),
    "CR_CHEST": _Protocol(
        "CR", ComputedRadiographyImageStorage, "XR CHEST 2 VIEWS", "CHEST", "chest_radiograph",
        (_SeriesPlan("PA", (1, 1), 1, "PA"), _SeriesPlan("LATERAL", (1, 1), 1, "LL")),
    ),
    "DX_HAND": _Protocol(
        "DX", DigitalXRayImageStorageForPresentation, "XR HAND 3 VIEWS", "HAND", "hand_radiograph",
        (_SeriesPlan("HAND PA", (1, 1), 1, "PA"), _SeriesPlan("HAND OBLIQUE", (1, 1), 1, "PA"),
         _SeriesPlan("HAND LATERAL", (1, 1), 1, "LATERAL")),
    ),
    "US_ABDOMEN": _Protocol(
        "US", UltrasoundImageStorage, "US ABDOMEN COMPLETE", "ABDOMEN", "liver_ultrasound",
        (_SeriesPlan("ABDOMEN", (3, 6), 1, ""), _SeriesPlan("LIVER CINE", (1, 2), 8, "")),
    ),
    "US_PELVIS": _Protocol(
        "US", UltrasoundImageStorage, "US PELVIS TRANSABDOMINAL", "PELVIS", "pelvis_ultrasound",
        (_SeriesPlan("PELVIS", (3, 5), 1, ""),),
    ),
}  # fmt: skip
# The first studies go through every modality, and the first ultrasound has its cine clip,
# so even a corpus of a few dozen files holds every kind; the rest are drawn by weight.
_FIRST_PROTOCOLS = ("CT_CHEST", "MR_BRAIN", "CR_CHEST", "US_ABDOMEN", "DX_HAND", "CT_ABDOMEN")
_PROTOCOL_WEIGHTS = {
    "CT_CHEST": 14, "CT_HEAD": 8, "CT_ABDOMEN": 10, "MR_BRAIN": 10, "MR_SPINE": 6,
    "CR_CHEST": 16, "DX_HAND": 8, "US_ABDOMEN": 8, "US_PELVIS": 5,
}  # fmt: skip
# Transfer syntaxes in turn by series across the corpus, so each appears within the first five
# series; half are explicit VR little endian, the usual archive syntax.
_SERIES_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless, ImplicitVRLittleEndian,
    ExplicitVRLittleEndian, ExplicitVRLittleEndian,
)  # fmt: skip


class _FilePlan(NamedTuple):
    study_number: int
    protocol: _Protocol
    series_number: int  # 1-based within the study
    series: _SeriesPlan
    series_instances: int
    instance_number: int  # 1-based within the series
    transfer_syntax: UID


@lru_cache(maxsize=8)
def _layout(settings: DicomCorpusSettings) -> tuple[_FilePlan, ...]:
    """Every file's place in its study and series, in file order; the last study may be cut short."""
    rng = random.Random(f"{settings.seed}:dicom layout")
    names, weights = tuple(_PROTOCOL_WEIGHTS), tuple(_PROTOCOL_WEIGHTS.values())
    plans: list[_FilePlan] = []
    series_count = 0
    study_number = 0
    while len(plans) < settings.total_files:
        if study_number < len(_FIRST_PROTOCOLS):
            protocol = _PROTOCOLS[_FIRST_PROTOCOLS[study_number]]
        else:
            protocol = _PROTOCOLS[rng.choices(names, weights)[0]]
        for series_number, series in enumerate(protocol.series, start=1):
            instances = rng.randint(*series.images)
            transfer_syntax = _SERIES_TRANSFER_SYNTAXES[series_count % len(_SERIES_TRANSFER_SYNTAXES)]
            series_count += 1
            plans.extend(
                _FilePlan(study_number, protocol, series_number, series, instances, instance, transfer_syntax)
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

_EQUIPMENT = {
    "CT": (
        ("GE MEDICAL SYSTEMS", "Revolution CT"), ("SIEMENS", "SOMATOM Definition AS"),
        ("Philips", "Ingenuity CT"), ("Canon Medical Systems", "Aquilion ONE"),
    ),
    "MR": (("SIEMENS", "MAGNETOM Skyra"), ("GE MEDICAL SYSTEMS", "SIGNA Premier"), ("Philips", "Ingenia")),
    "CR": (("FUJIFILM Corporation", "FCR PROFECT CS"), ("Agfa", "CR 30-X")),
    "DX": (("Carestream Health", "DRX-Evolution"), ("SIEMENS", "Ysio Max")),
    "US": (("GE Healthcare", "LOGIQ E10"), ("Philips", "EPIQ 7G"), ("SIEMENS", "ACUSON Sequoia")),
}  # fmt: skip


@lru_cache(maxsize=64)
def _study(seed: int, study_number: int, protocol: _Protocol) -> _Study:
    rng = random.Random(f"{seed}:dicom study:{study_number}")
    patient = synthetic_patient(seed, rng.randrange(PATIENT_POOL_SIZE))
    study_day = _FIRST_STUDY_DAY + timedelta(days=rng.randrange(_STUDY_DAYS))
    birth = date(int(patient.birth_date[:4]), int(patient.birth_date[4:6]), int(patient.birth_date[6:]))
    age_years = study_day.year - birth.year - ((study_day.month, study_day.day) < (birth.month, birth.day))
    name = f"{patient.family_name}^{patient.given_name}"
    manufacturer, model = rng.choice(_EQUIPMENT[protocol.modality])
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


def _dataset(seed: int, file_index: int, plan: _FilePlan, study: _Study) -> Dataset:
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
    render = _RENDERERS[protocol.modality]
    pixels = render(ds, plan, rng)
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


def _slice_position(plan: _FilePlan) -> float:
    """Where the slice lies through the organ, from -1 (first) to 1 (last)."""
    if plan.series_instances == 1:
        return 0.0
    return 2 * (plan.instance_number - 1) / (plan.series_instances - 1) - 1


class _Shape(NamedTuple):
    """An ellipse of the phantom, in coordinates from -1 to 1 across the image, adding `value` inside."""

    x: float
    y: float
    half_width: float
    half_height: float
    value: float
    taper: float = 0.0  # how much it shrinks towards the first and last slices (0: not at all)


# Intensities add up, as in the Shepp-Logan phantom: a shape inside another gives the difference.
_ANATOMY = {
    "chest": (  # HU over air (-1000)
        _Shape(0, 0.05, 0.86, 0.62, 1040), _Shape(-0.36, -0.02, 0.27, 0.42, -880, 0.3),
        _Shape(0.36, -0.02, 0.27, 0.42, -880, 0.3), _Shape(0.06, 0.02, 0.2, 0.2, 10, 0.5),
        _Shape(0, 0.5, 0.09, 0.08, 650), _Shape(0, 0.5, 0.04, 0.035, -300), _Shape(0.1, -0.12, 0.06, 0.06, 200),
    ),
    "head": (
        _Shape(0, 0, 0.72, 0.88, 1900, 0.5), _Shape(0, 0, 0.66, 0.82, -1860, 0.5),
        _Shape(-0.1, -0.05, 0.07, 0.22, -30, 0.7), _Shape(0.1, -0.05, 0.07, 0.22, -30, 0.7),
    ),
    "abdomen": (
        _Shape(0, 0.05, 0.9, 0.66, 1040), _Shape(-0.38, -0.15, 0.34, 0.3, 30, 0.4),
        _Shape(0.42, -0.1, 0.14, 0.18, 10, 0.6), _Shape(0, 0.48, 0.1, 0.09, 650), _Shape(0.15, 0.3, 0.06, 0.06, 160),
        _Shape(-0.28, 0.35, 0.08, 0.11, 120, 0.8), _Shape(0.3, 0.35, 0.08, 0.11, 120, 0.8),
    ),
    "brain": (  # MR signal: scalp, brain, ventricles
        _Shape(0, 0, 0.74, 0.9, 900, 0.5), _Shape(0, 0, 0.66, 0.82, -900, 0.5), _Shape(0, 0, 0.62, 0.78, 700, 0.5),
        _Shape(-0.1, -0.05, 0.07, 0.22, 600, 0.7), _Shape(0.1, -0.05, 0.07, 0.22, 600, 0.7),
    ),
    "spine": (  # sagittal: soft tissue, five vertebral bodies, the canal
        _Shape(0, 0, 0.8, 1.0, 500), _Shape(0.05, -0.8, 0.2, 0.13, 400), _Shape(0.05, -0.4, 0.2, 0.13, 400),
        _Shape(0.05, 0.0, 0.2, 0.13, 400), _Shape(0.05, 0.4, 0.2, 0.13, 400), _Shape(0.05, 0.8, 0.2, 0.13, 400),
        _Shape(-0.25, 0, 0.06, 1.0, 900, 0.3),
    ),
    "chest_radiograph": (  # attenuation: body, lungs let more through, mediastinum, shoulders
        _Shape(0, 0.1, 0.95, 0.95, 0.8), _Shape(-0.38, -0.05, 0.3, 0.6, -0.45), _Shape(0.38, -0.05, 0.3, 0.6, -0.45),
        _Shape(0.05, 0.15, 0.17, 0.45, 0.25), _Shape(0, 0.75, 0.2, 0.2, 0.2),
        _Shape(-0.75, -0.75, 0.2, 0.12, 0.3), _Shape(0.75, -0.75, 0.2, 0.12, 0.3),
    ),
    "hand_radiograph": (
        _Shape(0, 0.35, 0.45, 0.55, 0.5), _Shape(-0.3, -0.45, 0.07, 0.4, 0.45), _Shape(-0.1, -0.55, 0.07, 0.42, 0.45),
        _Shape(0.1, -0.5, 0.07, 0.4, 0.45), _Shape(0.28, -0.38, 0.06, 0.33, 0.45), _Shape(0.55, 0.0, 0.08, 0.3, 0.45),
        _Shape(0, 0.75, 0.3, 0.2, 0.4),
    ),
    "liver_ultrasound": (  # echogenicity inside the sector
        _Shape(0, 0.1, 1.2, 0.9, 0.55), _Shape(-0.15, 0.2, 0.7, 0.5, 0.15), _Shape(0.25, 0.35, 0.1, 0.06, -0.6),
        _Shape(-0.3, 0.55, 0.14, 0.09, -0.55),
    ),
    "pelvis_ultrasound": (
        _Shape(0, 0.1, 1.2, 0.9, 0.45), _Shape(0, 0.2, 0.35, 0.25, -0.4), _Shape(0.05, 0.6, 0.25, 0.15, 0.2),
    ),
}  # fmt: skip


def _phantom(rows: int, columns: int, shapes: tuple[_Shape, ...], position: float, shift: float = 0.0) -> np.ndarray:
    """The shapes drawn as smooth-edged ellipses on a float32 image, at slice `position` (-1..1).

    Only additions, multiplications and comparisons, all exactly rounded: the same values on
    every CPU, which transcendental functions would not promise.
    """
    image = np.zeros((rows, columns), dtype=np.float32)
    ys = np.linspace(-1, 1, rows, dtype=np.float32)
    xs = np.linspace(-1, 1, columns, dtype=np.float32)
    edge = 0.08
    for shape in shapes:
        scale = 1 - shape.taper * position * position
        half_width, half_height = shape.half_width * scale, shape.half_height * scale
        centre_y = shape.y + shift
        # Only the shape's bounding box is computed: the rest of the image is untouched.
        top, bottom = np.searchsorted(ys, [centre_y - half_height, centre_y + half_height])
        left, right = np.searchsorted(xs, [shape.x - half_width, shape.x + half_width])
        if top >= bottom or left >= right:
            continue
        dy = ((ys[top:bottom] - np.float32(centre_y)) / np.float32(half_height))[:, None]
        dx = ((xs[left:right] - np.float32(shape.x)) / np.float32(half_width))[None, :]
        inside = np.clip((1 - (dx * dx + dy * dy)) / np.float32(edge), 0, 1)
        image[top:bottom, left:right] += np.float32(shape.value) * inside * inside * (3 - 2 * inside)
    return image


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


def _render_ct(ds: Dataset, plan: _FilePlan, rng: np.random.Generator) -> np.ndarray:
    """A 512x512 axial slice stored as signed 16-bit, HU = stored - 1024, padding outside the field of view."""
    position = _slice_position(plan)
    anatomy = plan.protocol.anatomy
    hounsfield = _phantom(512, 512, _ANATOMY[anatomy], position) - 1000
    hounsfield += _noise(rng, hounsfield.shape, 12)
    stored = np.rint(hounsfield + 1024).astype(np.int16)
    outside_field = _outside_circle(512, 512)
    stored[outside_field] = -2000
    slice_thickness = 5.0
    z = (plan.instance_number - 1) * slice_thickness - 100.0
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = 120
    ds.SliceThickness = slice_thickness
    ds.ConvolutionKernel = "LUNG" if "LUNG" in plan.series.description else "STANDARD"
    ds.ImagePositionPatient = [-179.6484375, -179.6484375, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = z
    ds.PixelSpacing = [0.703125, 0.703125]
    ds.PixelPaddingValue = -2000
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    if anatomy == "chest":
        # Both presets, mediastinum first: readers take the first.
        lung = "LUNG" in plan.series.description
        ds.WindowCenter = [-600, 40] if lung else [40, -600]
        ds.WindowWidth = [1500, 400] if lung else [400, 1500]
        ds.WindowCenterWidthExplanation = ["LUNG", "MEDIASTINUM"] if lung else ["MEDIASTINUM", "LUNG"]
    elif anatomy == "head":
        ds.WindowCenter, ds.WindowWidth = 40, 80
    else:
        ds.WindowCenter, ds.WindowWidth = 50, 350
    _set_grey_pixel_module(ds, 512, 512, bits_stored=16, signed=True)
    return stored


def _render_mr(ds: Dataset, plan: _FilePlan, rng: np.random.Generator) -> np.ndarray:
    """A 256x256 slice, 12 bits stored in 16, with T1, T2 or FLAIR contrast and Rician-like noise."""
    position = _slice_position(plan)
    description = plan.series.description
    signal = _phantom(256, 256, _ANATOMY[plan.protocol.anatomy], position)
    if "T1" in description:
        # Fluid turns dark: the contrast inverts inside the body, and air stays black.
        signal = np.where(signal > 50, np.float32(1300) - signal * np.float32(0.6), np.float32(0))
        repetition_time, echo_time, window = 550.0, 12.0, (600, 1200)
    elif "FLAIR" in description:
        signal *= np.float32(0.8)
        repetition_time, echo_time, window = 9000.0, 90.0, (500, 1000)
    else:
        signal *= np.float32(1.6)
        repetition_time, echo_time, window = 4000.0, 100.0, (900, 1800)
    signal = np.abs(signal + _noise(rng, signal.shape, 25))
    stored = np.clip(np.rint(signal), 0, 4095).astype(np.uint16)
    spacing = 6.0
    offset = (plan.instance_number - 1) * spacing - 20.0
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = 5.0
    ds.SpacingBetweenSlices = spacing
    ds.RepetitionTime = repetition_time
    ds.EchoTime = echo_time
    ds.MagneticFieldStrength = 3.0 if "SIEMENS" in ds.Manufacturer or "SIGNA" in ds.ManufacturerModelName else 1.5
    if plan.series.orientation == "SAGITTAL":
        ds.ImagePositionPatient = [offset, -120.0, 120.0]
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    else:
        ds.ImagePositionPatient = [-120.0, -120.0, offset]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = offset
    ds.PixelSpacing = [0.9375, 0.9375]
    ds.WindowCenter, ds.WindowWidth = window
    _set_grey_pixel_module(ds, 256, 256, bits_stored=12, signed=False)
    return stored


def _render_radiograph(ds: Dataset, plan: _FilePlan, rng: np.random.Generator) -> np.ndarray:
    """A projection radiograph, 12 bits stored in 16; CR as MONOCHROME1 (white is low), DX as MONOCHROME2."""
    rows, columns = (1024, 1024) if ds.Modality == "CR" else (1152, 896)
    attenuation = _phantom(rows, columns, _ANATOMY[plan.protocol.anatomy], 0.0)
    if plan.series.orientation in ("LL", "LATERAL"):
        attenuation = attenuation[:, ::-1] * np.float32(1.15)  # a lateral view is denser and mirrored
    # Brightness rises with attenuation; a gradient mimics the heel effect of the tube.
    gradient = np.linspace(0.95, 1.05, rows, dtype=np.float32)[:, None]
    brightness = (np.float32(300) + np.float32(3000) * attenuation) * gradient + _noise(rng, (rows, columns), 40)
    brightness = np.clip(brightness, 0, 4095)
    spacing = 0.34 if ds.Modality == "CR" else 0.139
    laterality_marker = plan.instance_number == 1 and rng.random() < 0.35
    if laterality_marker:
        # A lead "R" marker, burned into the image as many sites still do.
        brightness[40:110, 40:60] = 4095
        brightness[40:60, 40:100] = 4095
        ds.BurnedInAnnotation = "YES"
    photometric = "MONOCHROME1" if ds.Modality == "CR" else "MONOCHROME2"
    stored = np.rint(4095 - brightness if photometric == "MONOCHROME1" else brightness).astype(np.uint16)
    ds.ViewPosition = plan.series.orientation
    ds.PatientOrientation = ["A", "F"] if plan.series.orientation in ("LL", "LATERAL") else ["L", "F"]
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.KVP = 120 if plan.protocol.anatomy == "chest_radiograph" else 55
    ds.ExposureTime = 12
    ds.DistanceSourceToDetector = 1800.0
    if ds.Modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "SCINTILLATOR"
        ds.ImageLaterality = "R"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    _set_grey_pixel_module(ds, rows, columns, bits_stored=12, signed=False, photometric=photometric)
    return stored


def _render_ultrasound(ds: Dataset, plan: _FilePlan, rng: np.random.Generator) -> np.ndarray:
    """A 480x640 RGB sector scan with speckle, annotation text blocks and a grey bar burned in; a cine
    clip is several such frames of a breathing patient."""
    frame_count = plan.series.frames
    rows, columns = 480, 640
    inside_sector = _sector(rows, columns)
    frames = np.zeros((frame_count, rows, columns, 3), dtype=np.uint8)
    for frame in range(frame_count):
        breathing = 0.04 * math.sin(2 * math.pi * frame / max(frame_count, 1))
        echo = _phantom(rows, columns, _ANATOMY[plan.protocol.anatomy], 0.0, shift=breathing)
        speckle = np.abs(_noise(rng, (rows, columns), 1.0)) * np.float32(0.8) + np.float32(0.4)
        grey = np.clip(echo * speckle * np.float32(255), 0, 255)
        grey[~inside_sector] = 0
        frames[frame] = grey.astype(np.uint8)[:, :, None]
        _burn_in_annotation(frames[frame])
    ds.BurnedInAnnotation = "YES"  # sites print patient name and date on the image
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    _set_colour_pixel_module(ds, rows, columns)
    if frame_count > 1:
        ds.NumberOfFrames = frame_count
        ds.FrameTime = 33.3
        ds.CineRate = 30
        ds.FrameIncrementPointer = 0x00181063  # (0018,1063) Frame Time
        return frames
    return frames[0]


def _sector(rows: int, columns: int) -> np.ndarray:
    """The fan a curved probe images: within 35 degrees of vertical and 95% of the height from its apex."""
    y = np.arange(rows, dtype=np.float32)[:, None] + np.float32(40)
    x = np.arange(columns, dtype=np.float32)[None, :] - np.float32(columns / 2)
    tan_half_angle = np.float32(math.tan(math.radians(35)))
    return (np.abs(x) <= y * tan_half_angle) & (x * x + y * y <= np.float32((rows * 0.95 + 40) ** 2))


def _burn_in_annotation(frame: np.ndarray) -> None:
    """Blocks where a scanner writes the patient's name, the date and the probe, and a grey bar."""
    yellow, white = (230, 220, 40), (235, 235, 235)
    for line, width in enumerate((180, 140, 90)):
        frame[12 + 16 * line : 22 + 16 * line, 12 : 12 + width] = white if line else yellow
    frame[12:22, 520:628] = white
    frame[120:360, 612:624] = np.linspace(255, 0, 240, dtype=np.float32).astype(np.uint8)[:, None, None]


_RENDERERS = {
    "CT": _render_ct, "MR": _render_mr, "CR": _render_radiograph, "DX": _render_radiograph, "US": _render_ultrasound,
}  # fmt: skip


@lru_cache(maxsize=8)
def _outside_circle(rows: int, columns: int, radius: float = 1.0) -> np.ndarray:
    ys = np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, columns, dtype=np.float32)[None, :]
    return xs * xs + ys * ys > np.float32(radius * radius)


def _set_grey_pixel_module(
    ds: Dataset, rows: int, columns: int, bits_stored: int, signed: bool, photometric: str = "MONOCHROME2"
) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def _set_colour_pixel_module(ds: Dataset, rows: int, columns: int) -> None:
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
