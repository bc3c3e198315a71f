"""PS3.15 Annex E's Basic Profile, Table E.1-1, as the `dicom-anonymizer` package (BSD-3) ships it.

It is a cross-check of the allow-list in `medical_assets.dicom.attributes`: nothing the table lists
is declared to be kept as written. Its own applier is not used: it draws random UIDs and writes
dummies where this project needs keyed pseudonyms that join across files, runs and HL7.
"""

from __future__ import annotations

from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.tag import Tag

ANNEX_E_RELEASE = "dicomfields_2026c"  # the release of Table E.1-1 in dicom-anonymizer


def annex_e_action(tag: int) -> str | None:
    """The Basic Profile's action for the tag in Table E.1-1 (D, Z, X, U, Z/D, X/Z, X/D, X/Z/D or
    X/Z/U*), or None when the table does not list it."""
    action = _ANNEX_E_ACTIONS.get(tag)
    if action:
        return action
    group, element = tag >> 16, tag & 0xFFFF
    for masked_group, masked_element, group_mask, element_mask, masked_action in _ANNEX_E_MASKED:
        if group & group_mask == masked_group and element & element_mask == masked_element:
            return masked_action
    return None


_TABLE_CATEGORIES = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}


def _load_table(release: str) -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    """The table as {tag: action}, and its repeating groups as (group, element, masks, action)."""
    categories = dicom_anonymization_database_selector(release)
    exact: dict[int, str] = {}
    masked = []
    for category, action in _TABLE_CATEGORIES.items():
        for entry in categories[category]:
            if len(entry) == 4:  # (group, element, group mask, element mask), e.g. the 60xx overlays
                group, element, group_mask, element_mask = entry
                masked.append((group & group_mask, element & element_mask, group_mask, element_mask, action))
            else:
                exact[Tag(*entry)] = action
    return exact, tuple(masked)


_ANNEX_E_ACTIONS, _ANNEX_E_MASKED = _load_table(ANNEX_E_RELEASE)
