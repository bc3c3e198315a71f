import numpy as np
import pytest

from medical_assets.dicom.thumbnails import THUMBNAIL_SIZE, thumbnail


def test_greyscale_image_is_shrunk_and_normalised():
    image = np.zeros((512, 512), dtype=np.int16)
    image[:, 256:] = 1000
    result = thumbnail(image, 1, 1)
    assert result.shape == (THUMBNAIL_SIZE, THUMBNAIL_SIZE) and result.dtype == np.float32
    assert result[:, :32].max() == 0.0 and result[:, 32:].min() == 1.0


def test_multi_frame_colour_uses_the_middle_frame_as_luma():
    frames = np.zeros((5, 100, 80, 3), dtype=np.uint8)
    frames[2, :50, :, 1] = 255  # green top half, only in the middle frame
    result = thumbnail(frames, 3, 5)
    assert result[:30].min() == pytest.approx(1.0) and result[-30:].max() == 0.0


def test_uniform_frame_is_all_zeros():
    assert not thumbnail(np.full((64, 64), 7, dtype=np.uint16), 1, 1).any()
