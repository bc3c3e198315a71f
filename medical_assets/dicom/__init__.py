"""DICOM files into the PHI zone's Arrow tables, one file at a time."""

from medical_assets.dicom import tables
from medical_assets.dicom.reader import ParsedDicomFile, is_dicom_candidate, read_dicom_file

__all__ = ["ParsedDicomFile", "is_dicom_candidate", "read_dicom_file", "tables"]
