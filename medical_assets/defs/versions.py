"""Code versions of our assets: a digest of the packages whose code makes each stage's output.

Dagster shows an asset whose code version differs from its last materialization's as changed, so
after an upgrade the UI says which tables a run would make differently.
"""

from medical_assets.landing import code_fingerprint

SYNTHETIC = code_fingerprint(["medical_assets.synthetic"])
HL7_PARSE = code_fingerprint(["medical_assets.hl7"])
DICOM_PARSE = code_fingerprint(["medical_assets.dicom"])
HL7_DEID = code_fingerprint(["medical_assets.hl7", "medical_assets.privacy"])
DICOM_DEID = code_fingerprint(["medical_assets.dicom", "medical_assets.privacy"])
ANALYTICS = code_fingerprint(["medical_assets.analytics"])
