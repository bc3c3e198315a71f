"""Fixed-size, normalised greyscale thumbnails of decoded DICOM pixels, for machine-learning users."""

import numpy as np
from PIL import Image

THUMBNAIL_SIZE = 64


def thumbnail(pixels: np.ndarray, samples_per_pixel: int | None, number_of_frames: int | None) -> np.ndarray:
    """A THUMBNAIL_SIZE x THUMBNAIL_SIZE float32 image in [0, 1] of the middle frame.

    Colour becomes luma (ITU-R BT.601); the frame is shrunk by area averaging, so thin bright
    structures fade instead of aliasing; min-max normalisation keeps modalities comparable.
    A uniform frame becomes all zeros.
    """
    frame = _middle_frame(pixels, samples_per_pixel or 1, number_of_frames or 1).astype(np.float32)
    if frame.ndim == 3:
        frame = frame[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    small = np.asarray(
        Image.fromarray(np.ascontiguousarray(frame), mode="F").resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.BOX)
    )
    low, high = float(small.min()), float(small.max())
    if high <= low:
        return np.zeros((THUMBNAIL_SIZE, THUMBNAIL_SIZE), dtype=np.float32)
    return ((small - low) / (high - low)).astype(np.float32)


def _middle_frame(pixels: np.ndarray, samples_per_pixel: int, number_of_frames: int) -> np.ndarray:
    # pydicom's pixel_array: (rows, cols), (rows, cols, samples), (frames, rows, cols[, samples]).
    is_multi_frame = number_of_frames > 1 and pixels.ndim == (4 if samples_per_pixel > 1 else 3)
    return pixels[pixels.shape[0] // 2] if is_multi_frame else pixels
