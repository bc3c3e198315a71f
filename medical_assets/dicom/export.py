"""The de-identified DICOM export of one batch of images: which images may leave the PHI zone, their
de-identified files, metadata rows and thumbnails. Nothing is lost: every image of the batch is either
exported or listed in the excluded table with the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection
from io import BytesIO

import pyarrow as pa
import pydicom

from medical_assets.dicom.burned_in import burned_in_risk, export_risk
from medical_assets.dicom.deidentify import Vocabulary, deid_image_row, deidentify_dicom_bytes
from medical_assets.dicom.tables import DEID_DICOM_IMAGES, DEID_DICOM_THUMBNAILS, DICOM_DEID_EXCLUDED
from medical_assets.privacy.pseudonyms import ISSUER_SCOPE, Pseudonymizer

ReadSource = Callable[[str], bytes]  # source_file -> its bytes
WriteOutput = Callable[[str, bytes], None]  # relative path under deid/dicom/ -> bytes

EXPORT_TABLES = {
    "dicom_images": DEID_DICOM_IMAGES,
    "dicom_thumbnails": DEID_DICOM_THUMBNAILS,
    "dicom_deid_excluded": DICOM_DEID_EXCLUDED,
}


def export_deidentified(
    images: pa.Table,
    thumbnails: pa.Table,
    read_source: ReadSource,
    write_output: WriteOutput,
    pseudonymizer: Pseudonymizer,
    profile: str,
    *,
    vocabulary: Vocabulary | None = None,
    patients_over_89: Collection[str] = frozenset(),
    patient_id_scope: str = ISSUER_SCOPE,
) -> dict[str, pa.Table]:
    """De-identify every image row of the PHI `dicom_images` table whose file may leave the PHI zone.

    The row's modality, flag and SOP class are judged first, then the file's own header
    (`export_risk`: Image Type, Conversion Type and the rest, which the row does not carry).
    `vocabulary`, `patients_over_89` and `patient_id_scope` are `deidentify_dicom_bytes`'s.
    """
    exported, excluded, new_uids = [], [], {}
    for image in images.to_pylist():
        detail = None
        reason = burned_in_risk(
            image.get("modality"), image.get("burned_in_annotation"), sop_class_uid=image.get("sop_class_uid")
        )
        if reason is None:
            try:
                row = deid_image_row(
                    image, pseudonymizer, profile, vocabulary=vocabulary, patient_id_scope=patient_id_scope
                )
                if row["deid_file"] is None:
                    raise _Unnamed("the image has no SOP, study or series instance UID to name its file")
                data = read_source(image["source_file"])
                reason = export_risk(_header(data))
                if reason is None:
                    output = deidentify_dicom_bytes(
                        data,
                        pseudonymizer,
                        profile,
                        vocabulary=vocabulary,
                        patients_over_89=patients_over_89,
                        patient_id_scope=patient_id_scope,
                    )
                    write_output(row["deid_file"], output)
            except Exception as error:  # noqa: BLE001 - one bad file is listed, never fatal for the batch
                reason = str(error) if isinstance(error, _Unnamed) else f"de-identification failed ({type(error).__name__})"
                detail = str(error).splitlines()[0][:300] if str(error) else None
            else:
                if reason is None:
                    exported.append(row)
                    new_uids[image["source_file"]] = row["sop_instance_uid"]
        if reason is not None:
            excluded.append(
                {
                    "source_file": image["source_file"],
                    "sop_instance_uid": image.get("sop_instance_uid"),
                    "modality": image.get("modality"),
                    "reason": reason,
                    "detail": detail,
                }
            )
    return {
        "dicom_images": pa.Table.from_pylist(exported, schema=DEID_DICOM_IMAGES),
        "dicom_thumbnails": _exported_thumbnails(thumbnails, new_uids),
        "dicom_deid_excluded": pa.Table.from_pylist(excluded, schema=DICOM_DEID_EXCLUDED),
    }


def _header(data: bytes) -> pydicom.Dataset:
    """The file's data set without its pixels, read as the reader reads files (`force=True`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about odd values it reads as they are
        return pydicom.dcmread(BytesIO(data), stop_before_pixels=True, force=True)


class _Unnamed(ValueError):
    """An image the export cannot name (and so cannot write) without its UIDs."""


def _exported_thumbnails(thumbnails: pa.Table, new_uids: dict[str, str]) -> pa.Table:
    if thumbnails.num_rows == 0 or not new_uids:
        return DEID_DICOM_THUMBNAILS.empty_table()
    sources = thumbnails.column("source_file").to_pylist()
    keep = [index for index, source in enumerate(sources) if source in new_uids]
    kept = thumbnails.take(pa.array(keep, pa.int64()))
    return pa.table(
        {
            "sop_instance_uid": pa.array([new_uids[sources[index]] for index in keep], pa.string()),
            "frame_index": kept.column("frame_index"),
            "thumbnail": kept.column("thumbnail"),
        },
        schema=DEID_DICOM_THUMBNAILS,
    )

