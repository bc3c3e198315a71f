"""HL7 v2 ER7 files into the PHI zone's Arrow tables."""

from medical_assets.hl7 import tables
from medical_assets.hl7.reader import ParsedBatch, ParsedHL7File, parse_hl7_batches, parse_hl7_file, parse_hl7_files

__all__ = ["ParsedBatch", "ParsedHL7File", "parse_hl7_batches", "parse_hl7_file", "parse_hl7_files", "tables"]
