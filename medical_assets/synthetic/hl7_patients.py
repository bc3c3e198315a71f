"""The pool of synthetic patients the HL7 corpus draws from, and other corpora join on."""

from datetime import date, timedelta
from functools import lru_cache
from typing import NamedTuple

from medical_assets.synthetic.draws import Draws
from medical_assets.synthetic.hl7_reference import (
    ACCENTED_FAMILY_NAMES,
    ACCENTED_FEMALE_GIVEN_NAMES,
    ACCENTED_MALE_GIVEN_NAMES,
    ADULT_KIN,
    AGE_BANDS,
    ALLERGIES,
    ALLERGY_COUNTS,
    CHILD_KIN,
    CITY_SHARES,
    FACILITY_SHARES,
    FAMILY_NAMES,
    FEMALE_GIVEN_NAMES,
    GENDERS,
    GIVEN_NAMES,
    KIN_GIVEN_NAMES,
    MALE_GIVEN_NAMES,
    MARITAL_STATUSES,
    STREET_NAMES,
    Facility,
)

PATIENT_POOL_SIZE = 8_000


class SyntheticPatient(NamedTuple):
    medical_record_number: str  # PID-3.1 of the MR identifier
    family_name: str
    given_name: str
    birth_date: str  # YYYYMMDD
    sex: str  # PID-8: F, M, O or U
    facility: str  # the facility that issues the record number, e.g. GENERAL_HOSPITAL (MSH-4 of its feed)
    # The record number's issuer as the HL7 feed names it (PID-3.4.1, e.g. GH); None when the feed
    # leaves PID-3.4 empty, so that a receiver's issuer is the facility itself
    issuer: str | None


def synthetic_patient(seed: int, patient_number: int) -> SyntheticPatient:
    """Patient `patient_number` (0..PATIENT_POOL_SIZE-1) of the pool the HL7 corpus with `seed` draws from.

    Other synthetic corpora (DICOM) take their patients from here, so their records join the
    HL7 feeds on medical record number and its issuer, name and birth date.
    """
    if not 0 <= patient_number < PATIENT_POOL_SIZE:
        raise ValueError(f"patient_number must be in 0..{PATIENT_POOL_SIZE - 1}, got {patient_number}")
    patient = pool_patient(seed, patient_number)
    family_name, given_name, _ = patient.name.split("^")
    return SyntheticPatient(
        patient.medical_record_number,
        family_name,
        given_name,
        patient.birth_date,
        patient.gender,
        patient.facility.name,
        _issuer(patient.facility),
    )


class Patient(NamedTuple):
    facility: Facility
    medical_record_number: str
    name: str  # PID-5
    birth_date: str  # PID-7, YYYYMMDD
    gender: str
    address: str  # PID-11
    phone: str  # PID-13
    marital_status: str
    ssn: str
    next_of_kin: str  # NK1 from NK1-2 on
    allergies: tuple[str, ...]  # AL1 segments


# Bounded: it holds the default pool whole, while a corpus of millions of patients keeps only the
# patients of recent visits instead of growing with every patient it meets.
@lru_cache(maxsize=16_384)
def pool_patient(seed: int, patient_number: int) -> Patient:
    """Patient `patient_number` (0 or more) of the pool for `seed`, as every message about them writes them.

    A patient depends only on the seed and the number, never on the size of the pool drawn from:
    patient 7 of a corpus of 8,000 patients is patient 7 of one of 5,000,000.
    """
    rng = Draws(f"{seed}:patient:{patient_number}")
    facility = rng.weighted(FACILITY_SHARES)
    gender = rng.weighted(GENDERS)
    given_names = {"F": FEMALE_GIVEN_NAMES, "M": MALE_GIVEN_NAMES}.get(gender, GIVEN_NAMES)
    family = rng.pick(FAMILY_NAMES)
    given = rng.pick(given_names)
    if facility.character_set and rng.random() < 0.1:
        family = rng.pick(ACCENTED_FAMILY_NAMES)
        given = rng.pick(ACCENTED_MALE_GIVEN_NAMES if gender == "M" else ACCENTED_FEMALE_GIVEN_NAMES)
    middle_kind = rng.random()
    if middle_kind < 0.6:
        middle = chr(ord("A") + rng.below(26))
    elif middle_kind < 0.8:
        middle = rng.pick(given_names)
    else:
        middle = ""

    low_age, high_age = rng.weighted(AGE_BANDS)
    age = rng.between(low_age, high_age)
    birth_date = date(2023 - age, 1, 1) + timedelta(days=rng.below(365))

    city = rng.weighted(CITY_SHARES)
    street = f"{rng.between(1, 9999)} {rng.pick(STREET_NAMES)}"
    other_designation = f"APT {rng.between(1, 40)}{rng.pick('ABCD')}" if rng.random() < 0.2 else ""
    zip_code = f"{city.zip3}{rng.between(1, 99):02d}"
    address = f"{street}^{other_designation}^{city.name}^{city.state}^{zip_code}"
    phone = _fictional_phone(rng, city.area_code)

    if age < 18:
        marital_status = "S"
        kin_code, kin_text = rng.pick(CHILD_KIN)
        kin_family = family
    else:
        marital_status = rng.weighted(MARITAL_STATUSES)
        kin_code, kin_text = rng.pick(ADULT_KIN)
        kin_family = family if kin_code != "FND" else rng.pick(FAMILY_NAMES)
    kin_name = f"{kin_family}^{rng.pick(KIN_GIVEN_NAMES.get(kin_code, GIVEN_NAMES))}"
    next_of_kin = f"{kin_name}|{kin_code}^{kin_text}^HL70063|{address}|{_fictional_phone(rng, city.area_code)}"

    allergy_count = rng.weighted(ALLERGY_COUNTS)
    allergies = tuple(
        f"AL1|{set_id}|{allergen_type}|{allergen}|{severity}|{reaction}"
        for set_id, (allergen_type, allergen, severity, reaction) in enumerate(
            rng.sample(ALLERGIES, allergy_count), start=1
        )
    )
    return Patient(
        facility=facility,
        medical_record_number=_medical_record_number(seed, patient_number),
        name=f"{family}^{given}^{middle}",
        birth_date=birth_date.strftime("%Y%m%d"),
        gender=gender,
        address=address,
        phone=phone,
        marital_status=marital_status,
        ssn=_fictional_ssn(rng),
        next_of_kin=next_of_kin,
        allergies=allergies,
    )


def _medical_record_number(seed: int, patient_number: int) -> str:
    # An affine map modulo 9,000,000 with a multiplier prime to it: seven digits that look
    # arbitrary yet never collide, so one MR always means one patient. The next 90,000,000
    # patients get eight digits by the same map, and so on, so that a pool of any size stays
    # collision-free while the first 9,000,000 keep their numbers.
    first, span = 1_000_000, 9_000_000
    while patient_number >= span:
        patient_number -= span
        first, span = first * 10, span * 10
    return str(first + (patient_number * 7_919 + seed) % span)


def _fictional_phone(rng: Draws, area_code: str) -> str:
    # 555-0100 to 555-0199 are reserved for fiction in every area code.
    return f"({area_code})555-01{rng.below(100):02d}^PRN^PH"


def _fictional_ssn(rng: Draws) -> str:
    # Area 9xx was never issued as an SSN; group 10-49 keeps clear of the ITIN groups too.
    return f"9{rng.below(100):02d}-{rng.between(10, 49)}-{rng.between(1, 9999):04d}"


def _issuer(facility: Facility) -> str | None:
    return facility.identifier_issuer.split("&")[0] or None
