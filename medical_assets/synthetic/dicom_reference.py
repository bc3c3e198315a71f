"""What the synthetic DICOM studies look like: protocols and their series, equipment, and anatomy."""

from __future__ import annotations

from typing import NamedTuple

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
)


class SeriesPlan(NamedTuple):
    description: str
    images: tuple[int, int]  # fewest and most instances
    frames: int  # frames per instance: more than one makes a cine clip
    orientation: str  # AXIAL, SAGITTAL, CORONAL, or the radiographic view


class Protocol(NamedTuple):
    modality: str
    sop_class_uid: UID
    study_description: str
    body_part: str
    anatomy: str  # the key of the shapes the pixel data is drawn from
    series: tuple[SeriesPlan, ...]


class FilePlan(NamedTuple):
    """One file's place in the corpus: its study, its series, and its instance in the series."""

    study_number: int
    protocol: Protocol
    series_number: int  # 1-based within the study
    series: SeriesPlan
    series_instances: int
    instance_number: int  # 1-based within the series
    transfer_syntax: UID


PROTOCOLS = {
    "CT_CHEST": Protocol(
        "CT", CTImageStorage, "CT CHEST WITHOUT CONTRAST", "CHEST", "chest",
        (SeriesPlan("AXIAL 5.0 MM STANDARD", (6, 10), 1, "AXIAL"),
         SeriesPlan("AXIAL 5.0 MM LUNG", (4, 6), 1, "AXIAL")),
    ),
    "CT_HEAD": Protocol(
        "CT", CTImageStorage, "CT HEAD WITHOUT CONTRAST", "HEAD", "head",
        (SeriesPlan("AXIAL 5.0 MM BRAIN", (6, 10), 1, "AXIAL"),),
    ),
    "CT_ABDOMEN": Protocol(
        "CT", CTImageStorage, "CT ABDOMEN PELVIS WITH CONTRAST", "ABDOMEN", "abdomen",
        (SeriesPlan("PORTAL VENOUS 5.0 MM", (8, 12), 1, "AXIAL"),),
    ),
    "MR_BRAIN": Protocol(
        "MR", MRImageStorage, "MR BRAIN WITHOUT CONTRAST", "HEAD", "brain",
        (
            SeriesPlan("AX T2 FSE", (5, 8), 1, "AXIAL"),
            SeriesPlan("AX T1 SE", (5, 8), 1, "AXIAL"),
            SeriesPlan("AX FLAIR", (4, 6), 1, "AXIAL"),
        ),
    ),
    "MR_SPINE": Protocol(
        "MR", MRImageStorage, "MR LUMBAR SPINE WITHOUT CONTRAST", "LSPINE", "spine",
        (SeriesPlan("SAG T2 FSE", (5, 7), 1, "SAGITTAL"), SeriesPlan("SAG T1 FSE", (5, 7), 1, "SAGITTAL")),
    ),
    "CR_CHEST": Protocol(
        "CR", ComputedRadiographyImageStorage, "XR CHEST 2 VIEWS", "CHEST", "chest_radiograph",
        (SeriesPlan("PA", (1, 1), 1, "PA"), SeriesPlan("LATERAL", (1, 1), 1, "LL")),
    ),
    "DX_HAND": Protocol(
        "DX", DigitalXRayImageStorageForPresentation, "XR HAND 3 VIEWS", "HAND", "hand_radiograph",
        (SeriesPlan("HAND PA", (1, 1), 1, "PA"), SeriesPlan("HAND OBLIQUE", (1, 1), 1, "PA"),
         SeriesPlan("HAND LATERAL", (1, 1), 1, "LATERAL")),
    ),
    "US_ABDOMEN": Protocol(
        "US", UltrasoundImageStorage, "US ABDOMEN COMPLETE", "ABDOMEN", "liver_ultrasound",
        (SeriesPlan("ABDOMEN", (3, 6), 1, ""), SeriesPlan("LIVER CINE", (1, 2), 8, "")),
    ),
    "US_PELVIS": Protocol(
        "US", UltrasoundImageStorage, "US PELVIS TRANSABDOMINAL", "PELVIS", "pelvis_ultrasound",
        (SeriesPlan("PELVIS", (3, 5), 1, ""),),
    ),
}  # fmt: skip
# The first studies go through every modality, and the first ultrasound has its cine clip,
# so even a corpus of a few dozen files holds every kind; the rest are drawn by weight.
FIRST_PROTOCOLS = ("CT_CHEST", "MR_BRAIN", "CR_CHEST", "US_ABDOMEN", "DX_HAND", "CT_ABDOMEN")
PROTOCOL_WEIGHTS = {
    "CT_CHEST": 14, "CT_HEAD": 8, "CT_ABDOMEN": 10, "MR_BRAIN": 10, "MR_SPINE": 6,
    "CR_CHEST": 16, "DX_HAND": 8, "US_ABDOMEN": 8, "US_PELVIS": 5,
}  # fmt: skip
# Transfer syntaxes in turn by series across the corpus, so each appears within the first five
# series; half are explicit VR little endian, the usual archive syntax.
SERIES_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless, ImplicitVRLittleEndian,
    ExplicitVRLittleEndian, ExplicitVRLittleEndian,
)  # fmt: skip


EQUIPMENT = {
    "CT": (
        ("GE MEDICAL SYSTEMS", "Revolution CT"), ("SIEMENS", "SOMATOM Definition AS"),
        ("Philips", "Ingenuity CT"), ("Canon Medical Systems", "Aquilion ONE"),
    ),
    "MR": (("SIEMENS", "MAGNETOM Skyra"), ("GE MEDICAL SYSTEMS", "SIGNA Premier"), ("Philips", "Ingenia")),
    "CR": (("FUJIFILM Corporation", "FCR PROFECT CS"), ("Agfa", "CR 30-X")),
    "DX": (("Carestream Health", "DRX-Evolution"), ("SIEMENS", "Ysio Max")),
    "US": (("GE Healthcare", "LOGIQ E10"), ("Philips", "EPIQ 7G"), ("SIEMENS", "ACUSON Sequoia")),
}  # fmt: skip


class Shape(NamedTuple):
    """An ellipse of the phantom, in coordinates from -1 to 1 across the image, adding `value` inside."""

    x: float
    y: float
    half_width: float
    half_height: float
    value: float
    taper: float = 0.0  # how much it shrinks towards the first and last slices (0: not at all)


# Intensities add up, as in the Shepp-Logan phantom: a shape inside another gives the difference.
ANATOMY = {
    "chest": (  # HU over air (-1000)
        Shape(0, 0.05, 0.86, 0.62, 1040), Shape(-0.36, -0.02, 0.27, 0.42, -880, 0.3),
        Shape(0.36, -0.02, 0.27, 0.42, -880, 0.3), Shape(0.06, 0.02, 0.2, 0.2, 10, 0.5),
        Shape(0, 0.5, 0.09, 0.08, 650), Shape(0, 0.5, 0.04, 0.035, -300), Shape(0.1, -0.12, 0.06, 0.06, 200),
    ),
    "head": (
        Shape(0, 0, 0.72, 0.88, 1900, 0.5), Shape(0, 0, 0.66, 0.82, -1860, 0.5),
        Shape(-0.1, -0.05, 0.07, 0.22, -30, 0.7), Shape(0.1, -0.05, 0.07, 0.22, -30, 0.7),
    ),
    "abdomen": (
        Shape(0, 0.05, 0.9, 0.66, 1040), Shape(-0.38, -0.15, 0.34, 0.3, 30, 0.4),
        Shape(0.42, -0.1, 0.14, 0.18, 10, 0.6), Shape(0, 0.48, 0.1, 0.09, 650), Shape(0.15, 0.3, 0.06, 0.06, 160),
        Shape(-0.28, 0.35, 0.08, 0.11, 120, 0.8), Shape(0.3, 0.35, 0.08, 0.11, 120, 0.8),
    ),
    "brain": (  # MR signal: scalp, brain, ventricles
        Shape(0, 0, 0.74, 0.9, 900, 0.5), Shape(0, 0, 0.66, 0.82, -900, 0.5), Shape(0, 0, 0.62, 0.78, 700, 0.5),
        Shape(-0.1, -0.05, 0.07, 0.22, 600, 0.7), Shape(0.1, -0.05, 0.07, 0.22, 600, 0.7),
    ),
    "spine": (  # sagittal: soft tissue, five vertebral bodies, the canal
        Shape(0, 0, 0.8, 1.0, 500), Shape(0.05, -0.8, 0.2, 0.13, 400), Shape(0.05, -0.4, 0.2, 0.13, 400),
        Shape(0.05, 0.0, 0.2, 0.13, 400), Shape(0.05, 0.4, 0.2, 0.13, 400), Shape(0.05, 0.8, 0.2, 0.13, 400),
        Shape(-0.25, 0, 0.06, 1.0, 900, 0.3),
    ),
    "chest_radiograph": (  # attenuation: body, lungs let more through, mediastinum, shoulders
        Shape(0, 0.1, 0.95, 0.95, 0.8), Shape(-0.38, -0.05, 0.3, 0.6, -0.45), Shape(0.38, -0.05, 0.3, 0.6, -0.45),
        Shape(0.05, 0.15, 0.17, 0.45, 0.25), Shape(0, 0.75, 0.2, 0.2, 0.2),
        Shape(-0.75, -0.75, 0.2, 0.12, 0.3), Shape(0.75, -0.75, 0.2, 0.12, 0.3),
    ),
    "hand_radiograph": (
        Shape(0, 0.35, 0.45, 0.55, 0.5), Shape(-0.3, -0.45, 0.07, 0.4, 0.45), Shape(-0.1, -0.55, 0.07, 0.42, 0.45),
        Shape(0.1, -0.5, 0.07, 0.4, 0.45), Shape(0.28, -0.38, 0.06, 0.33, 0.45), Shape(0.55, 0.0, 0.08, 0.3, 0.45),
        Shape(0, 0.75, 0.3, 0.2, 0.4),
    ),
    "liver_ultrasound": (  # echogenicity inside the sector
        Shape(0, 0.1, 1.2, 0.9, 0.55), Shape(-0.15, 0.2, 0.7, 0.5, 0.15), Shape(0.25, 0.35, 0.1, 0.06, -0.6),
        Shape(-0.3, 0.55, 0.14, 0.09, -0.55),
    ),
    "pelvis_ultrasound": (
        Shape(0, 0.1, 1.2, 0.9, 0.45), Shape(0, 0.2, 0.35, 0.25, -0.4), Shape(0.05, 0.6, 0.25, 0.15, 0.2),
    ),
}  # fmt: skip
