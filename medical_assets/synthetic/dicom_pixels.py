"""Pixel data of the synthetic DICOM files: anatomy drawn as smooth shapes, with seeded noise."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from pydicom.dataset import Dataset

from medical_assets.synthetic.dicom_reference import ANATOMY, FilePlan, Shape


def render_pixels(ds: Dataset, plan: FilePlan, rng: np.random.Generator) -> np.ndarray:
    """The file's pixels as its modality stores them; sets the image pixel module and the
    modality's acquisition attributes on `ds`."""
    return _RENDERERS[plan.protocol.modality](ds, plan, rng)


def _slice_position(plan: FilePlan) -> float:
    """Where the slice lies through the organ, from -1 (first) to 1 (last)."""
    if plan.series_instances == 1:
        return 0.0
    return 2 * (plan.instance_number - 1) / (plan.series_instances - 1) - 1


def _phantom(rows: int, columns: int, shapes: tuple[Shape, ...], position: float, shift: float = 0.0) -> np.ndarray:
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


def _render_ct(ds: Dataset, plan: FilePlan, rng: np.random.Generator) -> np.ndarray:
    """A 512x512 axial slice stored as signed 16-bit, HU = stored - 1024, padding outside the field of view."""
    position = _slice_position(plan)
    anatomy = plan.protocol.anatomy
    hounsfield = _phantom(512, 512, ANATOMY[anatomy], position) - 1000
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


def _render_mr(ds: Dataset, plan: FilePlan, rng: np.random.Generator) -> np.ndarray:
    """A 256x256 slice, 12 bits stored in 16, with T1, T2 or FLAIR contrast and Rician-like noise."""
    position = _slice_position(plan)
    description = plan.series.description
    signal = _phantom(256, 256, ANATOMY[plan.protocol.anatomy], position)
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


def _render_radiograph(ds: Dataset, plan: FilePlan, rng: np.random.Generator) -> np.ndarray:
    """A projection radiograph, 12 bits stored in 16; CR as MONOCHROME1 (white is low), DX as MONOCHROME2."""
    rows, columns = (1024, 1024) if ds.Modality == "CR" else (1152, 896)
    attenuation = _phantom(rows, columns, ANATOMY[plan.protocol.anatomy], 0.0)
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


def _render_ultrasound(ds: Dataset, plan: FilePlan, rng: np.random.Generator) -> np.ndarray:
    """A 480x640 RGB sector scan with speckle, annotation text blocks and a grey bar burned in; a cine
    clip is several such frames of a breathing patient."""
    frame_count = plan.series.frames
    rows, columns = 480, 640
    inside_sector = _sector(rows, columns)
    frames = np.zeros((frame_count, rows, columns, 3), dtype=np.uint8)
    for frame in range(frame_count):
        breathing = 0.04 * math.sin(2 * math.pi * frame / max(frame_count, 1))
        echo = _phantom(rows, columns, ANATOMY[plan.protocol.anatomy], 0.0, shift=breathing)
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
