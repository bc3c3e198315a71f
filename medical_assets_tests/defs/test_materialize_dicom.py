"""The DICOM assets through dagster.materialize: synthetic studies, and pydicom's own test files as a feed."""

import os
import shutil

import dagster as dg
import pyarrow.parquet as pq
import pytest
from pydicom.data.data_manager import DATA_ROOT

from medical_assets.defs.resources import PipelineConfig, RayResource

pytestmark = pytest.mark.slow

PYDICOM_FILES = os.path.join(DATA_ROOT, "test_files")


def _materialize(data_dir, dicom_source=None, files=12):
    from medical_assets.definitions import defs

    assets = [defs.get_assets_def(key) for key in ("synthetic_dicom_files", "dicom_landing_manifest", "dicom_images")]
    return dg.materialize(
        assets,
        resources={
            "pipeline": PipelineConfig(
                data_dir=str(data_dir), dicom_source=str(dicom_source) if dicom_source else None, synthetic_dicom_files=files
            ),
            "ray_engine": RayResource(num_cpus=2),
        },
    )


def _table(data_dir, name):
    return pq.read_table(os.path.join(data_dir, "phi", name))


def test_synthetic_studies_end_to_end(shared_ray, tmp_path):
    data = tmp_path / "data"
    assert _materialize(data, files=12).success
    images = _table(data, "dicom_images")
    assert images.num_rows == 12 and _table(data, "dicom_errors").num_rows == 0
    assert None not in images["pixel_mean"].to_pylist()
    assert len(set(images["sop_instance_uid"].to_pylist())) == 12
    thumbnails = _table(data, "dicom_thumbnails")
    assert set(thumbnails["sop_instance_uid"].to_pylist()) == set(images["sop_instance_uid"].to_pylist())
    pixels = thumbnails["thumbnail"].combine_chunks().to_numpy_ndarray()
    assert pixels.shape == (12, 64, 64) and pixels.min() == 0.0 and pixels.max() == 1.0

    assert _materialize(data, files=12).success
    assert _table(data, "dicom_images").num_rows == 12


def test_pydicom_test_files_as_a_feed_every_file_accounted_for(shared_ray, tmp_path):
    source = tmp_path / "archive"
    source.mkdir()
    chosen = ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "MR_truncated.dcm", "rtplan_truncated.dcm", "README.txt"]
    for name in chosen:
        shutil.copy(os.path.join(PYDICOM_FILES, name), source / name)
    shutil.copy(os.path.join(PYDICOM_FILES, "CT_small.dcm"), source / "1.2.840.113619.2.55.3")  # a UID as a name
    (source / "scan.dcm").write_bytes(b"this is not DICOM at all, only text with a .dcm name")
    data = tmp_path / "data"

    assert _materialize(data, dicom_source=source).success

    assert not (data / "landing").exists()
    images, errors = _table(data, "dicom_images"), _table(data, "dicom_errors")
    read = {os.path.basename(p) for p in images["source_file"].to_pylist()}
    failed = {os.path.basename(p) for p in errors["source_file"].to_pylist()}
    # README.txt is neither .dcm nor DICM-marked: not a DICOM landing file at all.
    expected = set(chosen) - {"README.txt"} | {"1.2.840.113619.2.55.3", "scan.dcm"}
    assert read | failed == expected and not read & failed
    assert failed == {"rtplan_truncated.dcm", "scan.dcm"}
    rows = {os.path.basename(r["source_file"]): r for r in images.to_pylist()}
    assert rows["MR_truncated.dcm"]["pixel_mean"] is None and "truncated" in rows["MR_truncated.dcm"]["pixel_error"]
    assert rows["JPEG2000.dcm"]["pixel_mean"] is not None
    assert rows["1.2.840.113619.2.55.3"]["sop_instance_uid"] == rows["CT_small.dcm"]["sop_instance_uid"]
    decoded = {name for name, row in rows.items() if row["pixel_mean"] is not None}
    thumbnailed = {os.path.basename(p) for p in _table(data, "dicom_thumbnails")["source_file"].to_pylist()}
    assert thumbnailed == decoded
