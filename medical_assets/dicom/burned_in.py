"""Whether text may be burned into an image's pixels, by the rules `medical_assets.dicom.attributes` declares.

Pixel data is never cleaned: an image at risk is kept out of the de-identified export.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydicom.dataset import Dataset
from pydicom.uid import UID

from medical_assets.dicom.attributes import (
    BURNED_IN_IMAGE_TYPES,
    BURNED_IN_KEYWORDS,
    BURNED_IN_TEXT_MODALITIES,
    DEID_RULES,
    Criterion,
    burned_in_sop_class,
)
from medical_assets.dicom.values import value_text, value_texts


def burned_in_risk(
    modality: str | None,
    burned_in_annotation: str | None,
    *,
    sop_class_uid: str | None = None,
    image_type: str | list[str] | None = None,
    conversion_type: str | None = None,
    attributes: Mapping[str, object] | None = None,
) -> str | None:
    """Why the image should stay out of the export because text may be burned into its pixels,
    or None when it may go.

    Modality and Burned In Annotation are always judged; the keyword arguments and `attributes`
    (keyword -> value, for the attributes of `attributes.BURNED_IN_KEYWORDS` the caller has) are
    judged when given, and a rule that reads an attribute the caller did not give is skipped.
    Burned In Annotation YES is a reason; NO clears the modality rule only, never the SOP class,
    Image Type, Conversion Type or rule set evidence: a device that saved a screen writes NO about
    the image it made, not about the screen it saved.
    """
    values: dict[str, object] = dict(attributes or {})
    values.update(Modality=modality, BurnedInAnnotation=burned_in_annotation)
    given = {"SOPClassUID": sop_class_uid, "ImageType": image_type, "ConversionType": conversion_type}
    values.update({keyword: value for keyword, value in given.items() if value is not None})
    return _risk(values)


def export_risk(dataset: Dataset) -> str | None:
    """`burned_in_risk` with every attribute its rules read taken from the data set (absent ones count as absent)."""
    values = {keyword: dataset.get(keyword) for keyword in BURNED_IN_KEYWORDS}
    return _risk(values)


def _risk(values: Mapping[str, object]) -> str | None:
    flag = (value_text(values.get("BurnedInAnnotation")) or "").upper()
    if flag == "YES":
        return "Burned In Annotation (0028,0301) is YES: the pixels carry text such as names or dates"
    sop_class = value_text(values.get("SOPClassUID"))
    reason = burned_in_sop_class(sop_class)
    if reason:
        return f"SOP Class UID (0008,0016) is {UID(sop_class).name}: {reason}"
    if value_text(values.get("ConversionType")):
        return "Conversion Type (0008,0064) is set: the image is a capture of a screen, document or film"
    image_types = {value.strip().upper() for value in value_texts(values.get("ImageType"))}
    for term, kind in BURNED_IN_IMAGE_TYPES.items():
        if term in image_types:
            return f"Image Type (0008,0008) holds {term}: {kind}, whose pixels often show patient data"
    for rule in DEID_RULES:
        if all(criterion.keyword in values for criterion in rule.criteria) and all(
            _holds(criterion, values) for criterion in rule.criteria
        ):
            return f"the header matches the pydicom/deid rule set's '{rule.name}': text is likely burned in"
    if flag == "NO":
        return None
    modality = (value_text(values.get("Modality")) or "").upper()
    if not modality:
        return (
            "Burned In Annotation (0028,0301) and Modality (0008,0060) are both missing, so the risk cannot be judged"
        )
    reason = BURNED_IN_TEXT_MODALITIES.get(modality)
    if reason:
        return f"Burned In Annotation (0028,0301) does not say NO, and in {modality} images {reason}"
    return None


def _holds(criterion: Criterion, values: Mapping[str, object]) -> bool:
    raw = values.get(criterion.keyword)
    texts = [text.strip() for text in value_texts(raw)]
    if criterion.test == "missing_or_empty":
        return not any(texts)
    if criterion.test == "empty":
        return raw is not None and not any(texts)
    joined = "\\".join(texts).upper()
    return any(term.upper() in joined for term in criterion.terms)
