"""A deterministic synthetic HL7 v2 corpus of hospital feeds, resembling no real person."""

import random
from bisect import bisect
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple

from medical_assets.synthetic.naming import NumberedFileNames


# Raised whenever a seed renders other bytes than before, so that a landing corpus of an older
# version is told apart from the current one. 2: PID-3.4 left out by one feed, a full HD in another.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class HL7CorpusSettings:
    """How many messages the corpus holds, how many go in one file, and the seed that fixes them."""

    total_messages: int = 50_000
    messages_per_file: int = 500
    seed: int = 20240101

    def __post_init__(self) -> None:
        if self.total_messages < 0:
            raise ValueError(f"total_messages must be 0 or more, got {self.total_messages}")
        if self.messages_per_file < 1:
            raise ValueError(f"messages_per_file must be 1 or more, got {self.messages_per_file}")

    def file_count(self) -> int:
        return -(-self.total_messages // self.messages_per_file)

    def messages_in_file(self, file_index: int) -> int:
        """Messages in file `file_index`: `messages_per_file`, except a shorter last file."""
        if not 0 <= file_index < self.file_count():
            raise IndexError(
                f"file_index {file_index} is outside 0..{self.file_count() - 1} "
                f"({self.total_messages} messages, {self.messages_per_file} per file)"
            )
        return min(self.messages_per_file, self.total_messages - file_index * self.messages_per_file)


def file_name(file_index: int) -> str:
    """The file's name, zero-padded so that names sort in message order."""
    return _FILE_NAMES.name(file_index)


def is_synthetic_file_name(name: str) -> bool:
    """True for names `file_name` gives, so a new corpus can replace an old one and nothing else."""
    return _FILE_NAMES.is_ours(name)


_FILE_NAMES = NumberedFileNames("adt_lab_pharm_", ".hl7")


def render_file(settings: HL7CorpusSettings, file_index: int) -> bytes:
    """The bytes of one file: its messages back to back, every segment ended by a carriage return."""
    first_message = file_index * settings.messages_per_file
    message_count = settings.messages_in_file(file_index)
    messages = [render_message(settings, n) for n in range(first_message, first_message + message_count)]
    return "".join(messages).encode("utf-8")


def render_message(settings: HL7CorpusSettings, message_number: int) -> str:
    """Message `message_number` (0-based, across files) in ER7, every segment ended by a carriage return.

    It depends only on the seed and the number, so any file renders alone, in any process, to
    the same bytes. Messages come in visits of four (number // 4): the admission (ADT^A01), a lab
    result (ORU^R01), a pharmacy order (RDE^O11) and the discharge (ADT^A03), for a patient drawn
    from a fixed pool, so one patient recurs across messages, types and files. Everything is
    invented: names from short lists, phone numbers in the 555-0100..0199 range kept for fiction,
    SSNs in the never-issued 9xx area, doctors with local IDs only.
    """
    if message_number < 0:
        raise ValueError(f"message_number must be 0 or more, got {message_number}")
    return _encounter_messages(settings.seed, message_number // 4)[message_number % 4]


class _Weighted(NamedTuple):
    options: tuple
    cumulative_weights: tuple[int, ...]


def _weighted(weights: dict) -> _Weighted:
    return _Weighted(tuple(weights), tuple(accumulate(weights.values())))


class _Draws(random.Random):
    """A seeded random.Random with cheaper draws: ample for synthetic data, not for statistics.

    random.Random's own choice and randint cost several times one call to random(), which adds
    up to most of the rendering time over 50,000 messages.
    """

    def below(self, stop: int) -> int:
        return int(self.random() * stop)

    def between(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))

    def pick(self, options):
        return options[int(self.random() * len(options))]

    def weighted(self, table: _Weighted):
        cumulative_weights = table.cumulative_weights
        return table.options[bisect(cumulative_weights, self.random() * cumulative_weights[-1])]


class _Facility(NamedTuple):
    name: str
    assigning_authority: str  # the facility's short code: its visit numbers' prefix, the namespace of its identifiers
    # PID-3.4 as the feed writes it: the namespace, with its universal ID as HD subcomponents, or
    # empty for a feed that leaves it out (a receiver then falls back to the sending facility, MSH-4)
    identifier_issuer: str
    hl7_version: str
    character_set: str  # MSH-18 as sent; empty when the feed declares none
    patient_id_layout: str  # the order of PID-3's repetitions in this feed
    normal_flag: str  # OBX-8 for a result inside its reference range
    ucum_units: bool  # OBX-6 as code^text^UCUM rather than the bare unit
    weight: int  # share of the patient pool


# Every feed is 2.4 or later: RDE^O11, one of the four message kinds, exists only from 2.4 on.
# Most feeds name the issuer of their identifiers; the clinic's does not (a tenth of the messages).
# 2.16.840.1.113883.19 is the OID HL7's own examples use, so it names no real organisation.
_FACILITIES = (
    _Facility("GENERAL_HOSPITAL", "GH", "GH", "2.5.1", "UNICODE UTF-8", "MR", "N", True, 3),
    _Facility("MEDICAL_CENTER", "MC", "MC", "2.6", "", "VN~MR", "", False, 2),
    _Facility("REGIONAL_CLINIC", "RC", "", "2.4", "", "MR", "N", False, 1),
    _Facility("UNIVERSITY_HOSPITAL", "UH", "UH&2.16.840.1.113883.19.5&ISO", "2.5", "UNICODE UTF-8", "MR~VN", "N", True, 2),
    _Facility("COMMUNITY_HOSPITAL", "CH", "CH", "2.4", "", "VN~MR", "", False, 1),
    _Facility("VALLEY_MEDICAL_CENTER", "VMC", "VMC", "2.5.1", "", "MR", "N", True, 1),
)
_FACILITY_SHARES = _weighted({facility: facility.weight for facility in _FACILITIES})

_GENDERS = _weighted({"F": 49, "M": 48, "O": 1, "U": 2})
_MARITAL_STATUSES = _weighted({"S": 30, "M": 50, "D": 12, "W": 8})
_PATIENT_CLASSES = _weighted({"I": 55, "E": 25, "O": 20})

_PATIENT_POOL_SIZE = 8_000

_FAMILY_NAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR",
    "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ",
    "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT",
    "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES", "GREEN", "ADAMS", "NELSON", "BAKER", "HALL",
    "RIVERA", "CAMPBELL", "MITCHELL", "CARTER", "ROBERTS", "GOMEZ", "PHILLIPS", "EVANS",
    "TURNER", "DIAZ", "PARKER", "CRUZ", "EDWARDS", "COLLINS", "REYES",
)  # fmt: skip
_FEMALE_GIVEN_NAMES = (
    "MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN", "JESSICA", "SARAH",
    "KAREN", "LISA", "NANCY", "BETTY", "MARGARET", "SANDRA", "ASHLEY", "EMILY", "DONNA",
    "MICHELLE", "CAROL", "AMANDA", "MELISSA", "DEBORAH", "STEPHANIE", "REBECCA", "LAURA",
    "SHARON", "CYNTHIA", "AMY", "ANGELA",
)  # fmt: skip
_MALE_GIVEN_NAMES = (
    "JAMES", "ROBERT", "JOHN", "MICHAEL", "DAVID", "WILLIAM", "RICHARD", "JOSEPH", "THOMAS",
    "CHARLES", "CHRISTOPHER", "DANIEL", "MATTHEW", "ANTHONY", "MARK", "DONALD", "STEVEN", "PAUL",
    "ANDREW", "JOSHUA", "KENNETH", "KEVIN", "BRIAN", "GEORGE", "TIMOTHY", "RONALD", "EDWARD",
    "JASON", "JEFFREY", "RYAN",
)  # fmt: skip
_GIVEN_NAMES = _FEMALE_GIVEN_NAMES + _MALE_GIVEN_NAMES
# Only feeds that declare UTF-8 in MSH-18 may carry these; the others are plain ASCII.
_ACCENTED_FAMILY_NAMES = ("NÚÑEZ", "MÜLLER", "PEÑA", "GARCÍA", "LEFÈVRE", "JOHANSSON")
_ACCENTED_FEMALE_GIVEN_NAMES = ("RENÉE", "ZOË", "SOFÍA", "CHLOÉ", "INÉS")
_ACCENTED_MALE_GIVEN_NAMES = ("JOSÉ", "ANDRÉ", "JOAQUÍN", "RENÉ", "JÜRGEN")

# Six attending doctors per facility, with local staff IDs only: a national provider number
# could belong to someone real.
_DOCTORS_BY_FACILITY = {
    facility.name: tuple(
        f"D{4_100 + 7 * doctor:05d}^{_FAMILY_NAMES[(7 * doctor + 3) % len(_FAMILY_NAMES)]}"
        f"^{_GIVEN_NAMES[(11 * doctor + 5) % len(_GIVEN_NAMES)]}^^^DR"
        for doctor in range(6 * facility_index, 6 * facility_index + 6)
    )
    for facility_index, facility in enumerate(_FACILITIES)
}

_STREET_NAMES = (
    "MAIN ST", "OAK AVE", "MAPLE DR", "CEDAR LN", "ELM ST", "PINE ST", "PARK AVE", "LAKE RD",
    "HILL ST", "RIVER RD", "CHURCH ST", "HIGH ST", "SPRING ST", "CENTER ST", "FOREST AVE",
    "MILL RD", "WALNUT ST", "SCHOOL ST", "MEADOW LN", "ORCHARD WAY",
)  # fmt: skip


class _City(NamedTuple):
    name: str
    state: str
    zip3: str
    area_code: str
    weight: int


# ZIP3s that HIPAA Safe Harbor requires to be shown as 000 (under 20,000 people) carry weight 1,
# so the de-identification step has real cases to suppress.
_CITIES = (
    _City("BOSTON", "MA", "021", "617", 4),
    _City("WORCESTER", "MA", "016", "508", 4),
    _City("PROVIDENCE", "RI", "029", "401", 4),
    _City("HARTFORD", "CT", "061", "860", 4),
    _City("ALBANY", "NY", "122", "518", 4),
    _City("PHILADELPHIA", "PA", "191", "215", 4),
    _City("PITTSBURGH", "PA", "152", "412", 4),
    _City("BALTIMORE", "MD", "212", "410", 4),
    _City("RICHMOND", "VA", "232", "804", 4),
    _City("CHARLOTTE", "NC", "282", "704", 4),
    _City("ATLANTA", "GA", "303", "404", 4),
    _City("COLUMBUS", "OH", "432", "614", 4),
    _City("DETROIT", "MI", "482", "313", 4),
    _City("CHICAGO", "IL", "606", "312", 4),
    _City("MINNEAPOLIS", "MN", "554", "612", 4),
    _City("SAINT LOUIS", "MO", "631", "314", 4),
    _City("NASHVILLE", "TN", "372", "615", 4),
    _City("DALLAS", "TX", "752", "214", 4),
    _City("HOUSTON", "TX", "770", "713", 4),
    _City("DENVER", "CO", "802", "303", 4),
    _City("PHOENIX", "AZ", "850", "602", 4),
    _City("SALT LAKE CITY", "UT", "841", "801", 4),
    _City("SEATTLE", "WA", "981", "206", 4),
    _City("PORTLAND", "OR", "972", "503", 4),
    _City("SACRAMENTO", "CA", "958", "916", 4),
    _City("CHARLESTOWN", "NH", "036", "603", 1),
    _City("CANAAN", "VT", "059", "802", 1),
    _City("NEW YORK", "NY", "102", "212", 1),
    _City("WASHINGTON", "DC", "203", "202", 1),
    _City("GRAND MARAIS", "MN", "556", "218", 1),
    _City("VALENTINE", "NE", "692", "402", 1),
    _City("BORGER", "TX", "790", "806", 1),
    _City("YELLOWSTONE NATL PARK", "WY", "821", "307", 1),
    _City("RAWLINS", "WY", "823", "307", 1),
    _City("JACKSON", "WY", "830", "307", 1),
    _City("KEMMERER", "WY", "831", "307", 1),
    _City("SOCORRO", "NM", "878", "575", 1),
    _City("TRUTH OR CONSEQUENCES", "NM", "879", "575", 1),
    _City("TUCUMCARI", "NM", "884", "575", 1),
    _City("BEATTY", "NV", "890", "775", 1),
    _City("ELY", "NV", "893", "775", 1),
)
_CITY_SHARES = _weighted({city: city.weight for city in _CITIES})

# Ages on 2024-01-01; the oldest band is what Safe Harbor's "90 or older" rule is for.
_AGE_BANDS = _weighted({(0, 17): 10, (18, 44): 27, (45, 64): 30, (65, 79): 20, (80, 89): 9, (90, 98): 4})

# HL7 table 0063, with the relationships an adult or a child patient would name.
_ADULT_KIN = (("SPO", "SPOUSE"), ("CHD", "CHILD"), ("SIB", "SIBLING"), ("FND", "FRIEND"))
_CHILD_KIN = (("MTH", "MOTHER"), ("FTH", "FATHER"))
_KIN_GIVEN_NAMES = {"MTH": _FEMALE_GIVEN_NAMES, "FTH": _MALE_GIVEN_NAMES}

# AL1-2 allergen type, AL1-3 allergen, AL1-4 severity, AL1-5 reaction.
_ALLERGY_COUNTS = _weighted({0: 70, 1: 22, 2: 8})
_ALLERGIES = (
    ("DA", "70618^PENICILLIN^RXNORM", "MO", "HIVES"),
    ("DA", "10180^SULFAMETHOXAZOLE^RXNORM", "MI", "RASH"),
    ("DA", "2670^CODEINE^RXNORM", "MO", "NAUSEA"),
    ("DA", "1191^ASPIRIN^RXNORM", "SV", "ANGIOEDEMA"),
    ("FA", "^PEANUTS", "SV", "ANAPHYLAXIS"),
    ("FA", "^SHELLFISH", "MO", "HIVES"),
    ("EA", "^LATEX", "MI", "CONTACT DERMATITIS"),
)


class _Analyte(NamedTuple):
    code: str  # LOINC
    name: str
    units: str  # UCUM
    low: float
    high: float
    mean: float
    sd: float
    value_format: str  # the lab's precision, e.g. ".1f"
    reference_range: str  # OBX-7, e.g. "3.5-5.1"


def _analyte(
    code: str, name: str, units: str, low: float, high: float, mean: float, sd: float, decimals: int
) -> _Analyte:
    value_format = f".{decimals}f"
    reference_range = f"{low:{value_format}}-{high:{value_format}}"
    return _Analyte(code, name, units, low, high, mean, sd, value_format, reference_range)


_GLUCOSE = _analyte("2345-7", "Glucose", "mg/dL", 70, 99, 104, 28, 0)
_UREA_NITROGEN = _analyte("3094-0", "Urea nitrogen", "mg/dL", 7, 20, 15, 6, 0)
_CREATININE = _analyte("2160-0", "Creatinine", "mg/dL", 0.6, 1.3, 1.0, 0.3, 2)
_SODIUM = _analyte("2951-2", "Sodium", "mmol/L", 136, 145, 139.5, 3.2, 0)
_POTASSIUM = _analyte("2823-3", "Potassium", "mmol/L", 3.5, 5.1, 4.2, 0.45, 1)
_CHLORIDE = _analyte("2075-0", "Chloride", "mmol/L", 98, 107, 102, 3.2, 0)
_CO2 = _analyte("2028-9", "CO2", "mmol/L", 22, 29, 25.5, 2.6, 0)
_CALCIUM = _analyte("17861-6", "Calcium", "mg/dL", 8.6, 10.3, 9.4, 0.5, 1)
_ALT = _analyte("1742-6", "ALT", "U/L", 7, 56, 30, 16, 0)
_AST = _analyte("1920-8", "AST", "U/L", 10, 40, 26, 11, 0)
_ALKALINE_PHOSPHATASE = _analyte("6768-6", "Alkaline phosphatase", "U/L", 44, 147, 90, 35, 0)
_BILIRUBIN = _analyte("1975-2", "Bilirubin", "mg/dL", 0.1, 1.2, 0.7, 0.35, 1)
_ALBUMIN = _analyte("1751-7", "Albumin", "g/dL", 3.5, 5.0, 4.1, 0.45, 1)
_PROTEIN = _analyte("2885-2", "Protein", "g/dL", 6.0, 8.3, 7.0, 0.6, 1)
_LEUKOCYTES = _analyte("6690-2", "Leukocytes", "10*3/uL", 4.5, 11.0, 7.8, 2.4, 1)
_ERYTHROCYTES = _analyte("789-8", "Erythrocytes", "10*6/uL", 4.2, 5.9, 4.8, 0.55, 2)
_HEMOGLOBIN = _analyte("718-7", "Hemoglobin", "g/dL", 12.0, 17.5, 13.9, 1.8, 1)
_HEMATOCRIT = _analyte("4544-3", "Hematocrit", "%", 36.0, 52.0, 41.5, 5.0, 1)
_PLATELETS = _analyte("777-3", "Platelets", "10*3/uL", 150, 400, 250, 65, 0)
_CHOLESTEROL = _analyte("2093-3", "Cholesterol", "mg/dL", 0, 199, 185, 38, 0)
_TRIGLYCERIDE = _analyte("2571-8", "Triglyceride", "mg/dL", 0, 149, 130, 55, 0)
_HDL_CHOLESTEROL = _analyte("2085-9", "HDL Cholesterol", "mg/dL", 40, 100, 52, 14, 0)
_LDL_CHOLESTEROL = _analyte("13457-7", "LDL Cholesterol", "mg/dL", 0, 99, 105, 32, 0)


class _Panel(NamedTuple):
    code: str  # LOINC, OBR-4
    name: str
    section: str  # OBR-24, HL7 table 0074
    analytes: tuple[_Analyte, ...]


_BASIC_METABOLIC = _Panel(
    "24321-2", "Basic metabolic panel", "CH",
    (_GLUCOSE, _UREA_NITROGEN, _CREATININE, _SODIUM, _POTASSIUM, _CHLORIDE, _CO2, _CALCIUM),
)  # fmt: skip
_COMPREHENSIVE_METABOLIC = _Panel(
    "24323-8", "Comprehensive metabolic panel", "CH",
    _BASIC_METABOLIC.analytes + (_ALBUMIN, _PROTEIN, _ALKALINE_PHOSPHATASE, _ALT, _AST, _BILIRUBIN),
)  # fmt: skip
_HEPATIC_FUNCTION = _Panel(
    "24325-3", "Hepatic function panel", "CH",
    (_ALBUMIN, _PROTEIN, _ALKALINE_PHOSPHATASE, _ALT, _AST, _BILIRUBIN),
)  # fmt: skip
_BLOOD_COUNT = _Panel(
    "58410-2", "CBC panel", "HM", (_LEUKOCYTES, _ERYTHROCYTES, _HEMOGLOBIN, _HEMATOCRIT, _PLATELETS)
)
_LIPID = _Panel(
    "24331-1", "Lipid panel", "CH",
    (_CHOLESTEROL, _TRIGLYCERIDE, _HDL_CHOLESTEROL, _LDL_CHOLESTEROL),
)  # fmt: skip

_LAB_COMMENTS = (
    "Specimen slightly hemolyzed \\T\\ potassium may be falsely elevated",
    "Critical value called to nurse \\T\\ read back verified",
    "Fasting specimen",
    "Repeat collection requested by provider",
)


class _Drug(NamedTuple):
    rxnorm: str
    name: str
    form: str  # RXE-6
    route: str  # RXR-1, HL7 table 0162
    give_amount: int  # RXE-3, in give_units
    give_units: str  # RXE-5
    frequency: str  # RXE-1.2
    dispense_units: str  # RXE-11


# RxNorm-style clinical drug codes for a demo corpus, not checked against a current RxNorm release.
_AMLODIPINE = _Drug("197361", "amlodipine 5 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_LISINOPRIL = _Drug("314076", "lisinopril 10 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_METOPROLOL = _Drug("866514", "metoprolol tartrate 50 MG Oral Tablet", "TAB", "PO", 1, "TAB", "BID", "TAB")
_ATORVASTATIN = _Drug("617310", "atorvastatin 20 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_WARFARIN = _Drug("855332", "warfarin sodium 5 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_METFORMIN = _Drug("861007", "metformin hydrochloride 500 MG Oral Tablet", "TAB", "PO", 1, "TAB", "BID", "TAB")
_ACETAMINOPHEN = _Drug("313782", "acetaminophen 325 MG Oral Tablet", "TAB", "PO", 2, "TAB", "Q6H", "TAB")
_IBUPROFEN = _Drug("310965", "ibuprofen 200 MG Oral Tablet", "TAB", "PO", 2, "TAB", "Q6H", "TAB")
_AMOXICILLIN = _Drug("308191", "amoxicillin 500 MG Oral Capsule", "CAP", "PO", 1, "CAP", "TID", "CAP")
_SERTRALINE = _Drug("312940", "sertraline 50 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_ENOXAPARIN = _Drug("854235", "enoxaparin sodium 40 MG in 0.4 ML Prefilled Syringe", "INJ", "SC", 40, "mg", "QD", "EA")
_HEPARIN = _Drug("1361615", "heparin sodium 5000 UNT/ML Injectable Solution", "INJ", "SC", 5000, "U", "Q8H", "EA")
_ONDANSETRON = _Drug("1740467", "ondansetron 2 MG/ML Injectable Solution", "INJ", "IV", 4, "mg", "Q6H", "EA")
_MORPHINE = _Drug("1732138", "morphine sulfate 2 MG/ML Injectable Solution", "INJ", "IV", 2, "mg", "Q4H", "EA")
_CEFTRIAXONE = _Drug("1665021", "ceftriaxone 1000 MG Injection", "INJ", "IV", 1000, "mg", "QD", "EA")
_HALOPERIDOL = _Drug("1719644", "haloperidol lactate 5 MG/ML Injectable Solution", "INJ", "IM", 5, "mg", "Q6H", "EA")
_SODIUM_CHLORIDE = _Drug("313002", "sodium chloride 0.9 % Injectable Solution", "SOL", "IV", 1000, "mL", "Q12H", "mL")
_ACETAMINOPHEN_SUSPENSION = _Drug("307668", "acetaminophen 32 MG/ML Oral Suspension", "SOL", "PO", 5, "mL", "Q6H", "mL")
_AMOXICILLIN_SUSPENSION = _Drug("308182", "amoxicillin 50 MG/ML Oral Suspension", "SOL", "PO", 5, "mL", "TID", "mL")
_IBUPROFEN_SUSPENSION = _Drug("197803", "ibuprofen 20 MG/ML Oral Suspension", "SOL", "PO", 5, "mL", "Q6H", "mL")

_DOSES_PER_DAY = {"QD": 1, "BID": 2, "TID": 3, "Q8H": 3, "Q12H": 2, "Q6H": 4, "Q4H": 6}
_ROUTE_NAMES = {"PO": "Oral", "IV": "Intravenous", "IM": "Intramuscular", "SC": "Subcutaneous"}


class _Service(NamedTuple):
    code: str  # PV1-10
    clinic: str  # MSH-6: the department whose EMR receives the feed
    units: tuple[str, ...]  # PV1-3.1 for inpatients
    diagnoses: tuple[tuple[str, str, str], ...]  # ICD-10-CM code, its name, the admit reason
    panels: tuple[_Panel, ...]
    drugs: tuple[_Drug, ...]


_SERVICES = {
    service.code: service
    for service in (
        _Service(
            "MED", "INTERNAL_MED", ("4W", "4E", "5W"),
            (
                ("E11.9", "Type 2 diabetes mellitus without complications", "HYPERGLYCEMIA"),
                ("J18.9", "Pneumonia, unspecified organism", "COUGH AND FEVER"),
                ("N39.0", "Urinary tract infection, site not specified", "DYSURIA"),
                ("J44.1", "Chronic obstructive pulmonary disease with (acute) exacerbation", "SHORTNESS OF BREATH"),
                ("A41.9", "Sepsis, unspecified organism", "FEVER"),
            ),
            (_BASIC_METABOLIC, _BLOOD_COUNT, _COMPREHENSIVE_METABOLIC, _HEPATIC_FUNCTION),
            (_METFORMIN, _CEFTRIAXONE, _ACETAMINOPHEN, _SODIUM_CHLORIDE, _ENOXAPARIN, _AMOXICILLIN),
        ),
        _Service(
            "SURG", "SURGERY", ("3N", "3S"),
            (
                ("K35.80", "Unspecified acute appendicitis", "ABDOMINAL PAIN"),
                ("K80.20", "Calculus of gallbladder without cholecystitis without obstruction", "RUQ PAIN"),
                ("S72.001A", "Fracture of unspecified part of neck of right femur, initial encounter", "FALL"),
                ("K40.90", "Unilateral inguinal hernia, without obstruction or gangrene", "GROIN PAIN"),
            ),
            (_BLOOD_COUNT, _BASIC_METABOLIC, _HEPATIC_FUNCTION),
            (_MORPHINE, _ONDANSETRON, _ACETAMINOPHEN, _IBUPROFEN, _ENOXAPARIN, _HEPARIN),
        ),
        _Service(
            "PEDS", "PEDIATRICS", ("PEDS",),
            (
                ("J21.9", "Acute bronchiolitis, unspecified", "WHEEZING"),
                ("A08.4", "Viral intestinal infection, unspecified", "VOMITING AND DIARRHEA"),
                ("J18.9", "Pneumonia, unspecified organism", "COUGH AND FEVER"),
                ("R56.00", "Simple febrile convulsions", "SEIZURE"),
            ),
            (_BLOOD_COUNT, _BASIC_METABOLIC),
            (_ACETAMINOPHEN_SUSPENSION, _AMOXICILLIN_SUSPENSION, _IBUPROFEN_SUSPENSION, _SODIUM_CHLORIDE),
        ),
        _Service(
            # L&D is the unit's usual name: the ampersand must travel escaped.
            "OB", "WOMENS_HEALTH", ("L\\T\\D", "MBU"),
            (
                ("O80", "Encounter for full-term uncomplicated delivery", "LABOR"),
                ("O14.90", "Unspecified pre-eclampsia, unspecified trimester", "ELEVATED BLOOD PRESSURE"),
                ("O47.9", "False labor, unspecified", "CONTRACTIONS"),
            ),
            (_BLOOD_COUNT, _BASIC_METABOLIC),
            (_ACETAMINOPHEN, _IBUPROFEN, _ONDANSETRON, _SODIUM_CHLORIDE),
        ),
        _Service(
            "PSYCH", "BEHAVIORAL_HEALTH", ("BH2",),
            (
                ("F32.9", "Major depressive disorder, single episode, unspecified", "DEPRESSION"),
                ("F20.9", "Schizophrenia, unspecified", "PSYCHOSIS"),
                ("F41.1", "Generalized anxiety disorder", "ANXIETY"),
                ("F31.9", "Bipolar disorder, unspecified", "MANIA"),
            ),
            (_BASIC_METABOLIC, _BLOOD_COUNT, _HEPATIC_FUNCTION),
            (_SERTRALINE, _HALOPERIDOL, _ACETAMINOPHEN),
        ),
        _Service(
            "CAR", "CARDIOLOGY", ("CCU", "TELE"),
            (
                ("I21.4", "Non-ST elevation (NSTEMI) myocardial infarction", "CHEST PAIN"),
                ("I50.9", "Heart failure, unspecified", "SHORTNESS OF BREATH"),
                ("I48.91", "Unspecified atrial fibrillation", "PALPITATIONS"),
                ("I10", "Essential (primary) hypertension", "HIGH BLOOD PRESSURE"),
            ),
            (_BASIC_METABOLIC, _LIPID, _BLOOD_COUNT, _COMPREHENSIVE_METABOLIC),
            (_AMLODIPINE, _LISINOPRIL, _METOPROLOL, _ATORVASTATIN, _WARFARIN, _HEPARIN),
        ),
    )
}  # fmt: skip

# HL7 table 0112, weighted towards home.
_DISCHARGE_DISPOSITIONS = _weighted({"01": 70, "06": 10, "03": 9, "02": 5, "07": 3, "20": 3})

_CHILD_SERVICES = _weighted({"PEDS": 85, "SURG": 10, "PSYCH": 5})
_CHILDBEARING_AGE_SERVICES = _weighted({"OB": 30, "MED": 30, "SURG": 15, "CAR": 10, "PSYCH": 15})
_ADULT_SERVICES = _weighted({"MED": 40, "SURG": 22, "CAR": 28, "PSYCH": 10})

# Admissions start between 2024-01-01 and 2025-12-15 so that the longest stay, and the lab
# results after it, still end in 2025.
_EPOCH = datetime(2024, 1, 1)
_ADMISSION_WINDOW_SECONDS = int((datetime(2025, 12, 15) - _EPOCH).total_seconds())
# Timestamps are the most frequent value: tables of their parts make them cheap.
_DATES = tuple((_EPOCH + timedelta(days=day)).strftime("%Y%m%d") for day in range(800))
_HOURS_MINUTES = tuple(f"{hour:02d}{minute:02d}" for hour in range(24) for minute in range(60))
_SECONDS = tuple(f"{second:02d}" for second in range(60))


def _hl7_datetime(seconds: int) -> str:
    """YYYYMMDDHHMMSS for a moment given in seconds since 2024-01-01 00:00."""
    day, second_of_day = divmod(seconds, 86_400)
    minute_of_day, second = divmod(second_of_day, 60)
    return _DATES[day] + _HOURS_MINUTES[minute_of_day] + _SECONDS[second]


class _Patient(NamedTuple):
    facility: _Facility
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


class _Encounter(NamedTuple):
    facility: _Facility
    patient: _Patient
    service: _Service
    attending_doctor: str
    visit_number: str
    admitted_at: int  # seconds since 2024-01-01
    discharged_at: int
    diagnosis: tuple[str, str, str]
    pid: str
    pv1_admitted: str
    pv1_discharged: str


@lru_cache(maxsize=16_384)
def _patient(seed: int, patient_number: int) -> _Patient:
    rng = _Draws(f"{seed}:patient:{patient_number}")
    facility = rng.weighted(_FACILITY_SHARES)
    gender = rng.weighted(_GENDERS)
    given_names = {"F": _FEMALE_GIVEN_NAMES, "M": _MALE_GIVEN_NAMES}.get(gender, _GIVEN_NAMES)
    family = rng.pick(_FAMILY_NAMES)
    given = rng.pick(given_names)
    if facility.character_set and rng.random() < 0.1:
        family = rng.pick(_ACCENTED_FAMILY_NAMES)
        given = rng.pick(_ACCENTED_MALE_GIVEN_NAMES if gender == "M" else _ACCENTED_FEMALE_GIVEN_NAMES)
    middle_kind = rng.random()
    if middle_kind < 0.6:
        middle = chr(ord("A") + rng.below(26))
    elif middle_kind < 0.8:
        middle = rng.pick(given_names)
    else:
        middle = ""

    low_age, high_age = rng.weighted(_AGE_BANDS)
    age = rng.between(low_age, high_age)
    birth_date = date(2023 - age, 1, 1) + timedelta(days=rng.below(365))

    city = rng.weighted(_CITY_SHARES)
    street = f"{rng.between(1, 9999)} {rng.pick(_STREET_NAMES)}"
    other_designation = f"APT {rng.between(1, 40)}{rng.pick('ABCD')}" if rng.random() < 0.2 else ""
    zip_code = f"{city.zip3}{rng.between(1, 99):02d}"
    address = f"{street}^{other_designation}^{city.name}^{city.state}^{zip_code}"
    phone = _fictional_phone(rng, city.area_code)

    if age < 18:
        marital_status = "S"
        kin_code, kin_text = rng.pick(_CHILD_KIN)
        kin_family = family
    else:
        marital_status = rng.weighted(_MARITAL_STATUSES)
        kin_code, kin_text = rng.pick(_ADULT_KIN)
        kin_family = family if kin_code != "FND" else rng.pick(_FAMILY_NAMES)
    kin_name = f"{kin_family}^{rng.pick(_KIN_GIVEN_NAMES.get(kin_code, _GIVEN_NAMES))}"
    next_of_kin = f"{kin_name}|{kin_code}^{kin_text}^HL70063|{address}|{_fictional_phone(rng, city.area_code)}"

    allergy_count = rng.weighted(_ALLERGY_COUNTS)
    allergies = tuple(
        f"AL1|{set_id}|{allergen_type}|{allergen}|{severity}|{reaction}"
        for set_id, (allergen_type, allergen, severity, reaction) in enumerate(
            rng.sample(_ALLERGIES, allergy_count), start=1
        )
    )
    return _Patient(
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
    # arbitrary yet never collide, so one MR always means one patient.
    return str(1_000_000 + (patient_number * 7_919 + seed) % 9_000_000)


def _fictional_phone(rng: _Draws, area_code: str) -> str:
    # 555-0100 to 555-0199 are reserved for fiction in every area code.
    return f"({area_code})555-01{rng.below(100):02d}^PRN^PH"


def _fictional_ssn(rng: _Draws) -> str:
    # Area 9xx was never issued as an SSN; group 10-49 keeps clear of the ITIN groups too.
    return f"9{rng.below(100):02d}-{rng.between(10, 49)}-{rng.between(1, 9999):04d}"


# A file renders its encounters' messages in order, so a small cache saves three of four builds.
@lru_cache(maxsize=256)
def _encounter_messages(seed: int, encounter_number: int) -> tuple[str, str, str, str]:
    """The four messages of one visit (admission, lab result, pharmacy order, discharge)."""
    rng = _Draws(f"{seed}:encounter:{encounter_number}")
    encounter = _encounter(seed, encounter_number, rng)
    first_message_number = encounter_number * 4
    admission, lab_result, pharmacy_order, discharge = (
        "\r".join(build(first_message_number + kind, encounter, rng)) + "\r"
        for kind, build in enumerate(_MESSAGE_BUILDERS)
    )
    return admission, lab_result, pharmacy_order, discharge


def _encounter(seed: int, encounter_number: int, rng: _Draws) -> _Encounter:
    patient = _patient(seed, rng.below(_PATIENT_POOL_SIZE))
    facility = patient.facility
    admitted_at = rng.below(_ADMISSION_WINDOW_SECONDS)
    age = _age_on(patient.birth_date, _hl7_datetime(admitted_at))
    service = _SERVICES[_service_code(rng, age, patient.gender)]

    patient_class = "I" if service.code == "OB" else rng.weighted(_PATIENT_CLASSES)
    if patient_class == "I":
        stay_seconds = rng.between(86_400, 10 * 86_400)
        location = f"{rng.pick(service.units)}^{rng.between(100, 599)}^{rng.pick('AB')}"
        admission_type = {"OB": "L", "SURG": "C"}.get(service.code, "U")
        admit_source = "1"
    elif patient_class == "E":
        stay_seconds = rng.between(2 * 3_600, 12 * 3_600)
        location = f"ED^{rng.between(1, 30):02d}^1"
        admission_type = "E"
        admit_source = "7"
    else:
        stay_seconds = rng.between(3_600, 6 * 3_600)
        location = f"OPC^{rng.between(1, 20)}^"
        admission_type = "R"
        admit_source = "1"
    discharged_at = admitted_at + stay_seconds

    attending_doctor = rng.pick(_DOCTORS_BY_FACILITY[facility.name])
    visit_number = f"{facility.assigning_authority}{encounter_number + 1:08d}"
    account_number = f"A{encounter_number + 1:09d}"

    visit_identifier = f"{visit_number}^^^{facility.identifier_issuer}^VN"
    record_identifier = f"{patient.medical_record_number}^^^{facility.identifier_issuer}^MR"
    patient_identifiers = {
        "MR": record_identifier,
        "VN~MR": f"{visit_identifier}~{record_identifier}",
        "MR~VN": f"{record_identifier}~{visit_identifier}",
    }[facility.patient_id_layout]
    pid = _segment(
        "PID",
        {
            1: "1",
            3: patient_identifiers,
            5: patient.name,
            7: patient.birth_date,
            8: patient.gender,
            11: patient.address,
            13: patient.phone,
            16: patient.marital_status,
            18: account_number,
            19: patient.ssn,
        },
    )
    pv1_fields = {
        1: "1",
        2: patient_class,
        3: f"{location}^{facility.name}",
        4: admission_type,
        7: attending_doctor,
        10: service.code,
        14: admit_source,
        17: attending_doctor,
        19: visit_number,
        44: _hl7_datetime(admitted_at),
    }
    pv1_admitted = _segment("PV1", pv1_fields)
    disposition = rng.weighted(_DISCHARGE_DISPOSITIONS) if patient_class == "I" else "01"
    pv1_discharged = _segment("PV1", {**pv1_fields, 36: disposition, 45: _hl7_datetime(discharged_at)})
    return _Encounter(
        facility=facility,
        patient=patient,
        service=service,
        attending_doctor=attending_doctor,
        visit_number=visit_number,
        admitted_at=admitted_at,
        discharged_at=discharged_at,
        diagnosis=rng.pick(service.diagnoses),
        pid=pid,
        pv1_admitted=pv1_admitted,
        pv1_discharged=pv1_discharged,
    )


def _age_on(birth_date: str, moment: str) -> int:
    """Age in whole years, from HL7 dates: YYYYMMDD read as numbers differ by 10,000 a year."""
    return (int(moment[:8]) - int(birth_date)) // 10_000


def _service_code(rng: _Draws, age: int, gender: str) -> str:
    if age < 18:
        return rng.weighted(_CHILD_SERVICES)
    if gender == "F" and age <= 45:
        return rng.weighted(_CHILDBEARING_AGE_SERVICES)
    return rng.weighted(_ADULT_SERVICES)


def _segment(segment_id: str, fields: dict[int, str]) -> str:
    """One segment from its fields by sequence number; the ones not given stay empty."""
    values = [""] * (max(fields) + 1)
    values[0] = segment_id
    for sequence, value in fields.items():
        values[sequence] = value
    return "|".join(values)


def _message_header(
    encounter: _Encounter, application: str, event: str, structure: str, sent_at: int, message_number: int
) -> str:
    facility = encounter.facility
    message_type = f"{event}^{structure}"  # MSH-9.3, the message structure, exists from 2.3.1 on
    header = (
        f"MSH|^~\\&|{application}|{facility.name}|EMR|{encounter.service.clinic}|{_hl7_datetime(sent_at)}"
        f"||{message_type}|MSG{message_number:08d}|P|{facility.hl7_version}"
    )
    if facility.character_set:
        return f"{header}|||AL|NE|USA|{facility.character_set}"
    return header


def _admission(message_number: int, encounter: _Encounter, rng: _Draws) -> list[str]:
    recorded_at = encounter.admitted_at + rng.between(30, 900)
    segments = [
        _message_header(encounter, "ADT", "ADT^A01", "ADT_A01", recorded_at, message_number),
        f"EVN|A01|{_hl7_datetime(recorded_at)}||||{_hl7_datetime(encounter.admitted_at)}",
        encounter.pid,
    ]
    if rng.random() < 0.4:
        segments.append(f"NK1|1|{encounter.patient.next_of_kin}")
    segments.append(encounter.pv1_admitted)
    if rng.random() < 0.5:
        segments.append(f"PV2|||^{encounter.diagnosis[2]}")
    segments.extend(encounter.patient.allergies)
    if rng.random() < 0.7:
        segments.append(_diagnosis(encounter, "A", encounter.admitted_at))
    return segments


def _discharge(message_number: int, encounter: _Encounter, rng: _Draws) -> list[str]:
    recorded_at = encounter.discharged_at + rng.between(30, 900)
    segments = [
        _message_header(encounter, "ADT", "ADT^A03", "ADT_A03", recorded_at, message_number),
        f"EVN|A03|{_hl7_datetime(recorded_at)}||||{_hl7_datetime(encounter.discharged_at)}",
        encounter.pid,
        encounter.pv1_discharged,
    ]
    if rng.random() < 0.8:
        segments.append(_diagnosis(encounter, "F", encounter.discharged_at))
    return segments


def _diagnosis(encounter: _Encounter, diagnosis_type: str, diagnosed_at: int) -> str:
    code, name, _ = encounter.diagnosis
    return f"DG1|1|I10|{code}^{name}^I10||{_hl7_datetime(diagnosed_at)}|{diagnosis_type}"


def _lab_result(message_number: int, encounter: _Encounter, rng: _Draws) -> list[str]:
    facility = encounter.facility
    stay_seconds = encounter.discharged_at - encounter.admitted_at
    collected_at = encounter.admitted_at + 600 + int(rng.random() * stay_seconds * 0.6)
    resulted_at = collected_at + rng.between(20 * 60, 3 * 3_600)
    segments = [
        _message_header(encounter, "LAB", "ORU^R01", "ORU_R01", resulted_at + rng.between(5, 120), message_number),
        encounter.pid,
    ]
    if rng.random() < 0.75:
        segments.append(encounter.pv1_admitted)
    with_order_control = rng.random() < 0.5
    first_panel = rng.pick(encounter.service.panels)
    panels = [first_panel]
    if rng.random() < 0.15:
        panels.append(rng.pick([p for p in encounter.service.panels if p is not first_panel]))
    collected = _hl7_datetime(collected_at)
    resulted = _hl7_datetime(resulted_at)
    for group, panel in enumerate(panels, start=1):
        placer_order_number = f"ORD{message_number:08d}{group}"
        filler_order_number = f"LAB{message_number:08d}{group}"
        if with_order_control:
            segments.append(
                f"ORC|RE|{placer_order_number}|{filler_order_number}||CM||||{resulted}|||{encounter.attending_doctor}"
            )
        segments.append(
            f"OBR|{group}|{placer_order_number}|{filler_order_number}|{panel.code}^{panel.name}^LN|||{collected}"
            f"|||||||||{encounter.attending_doctor}||||||{resulted}||{panel.section}|F"
        )
        # A run of the panel's analytes, in the order the panel reports them.
        observation_count = rng.between(2, min(6, len(panel.analytes)))
        first = rng.below(len(panel.analytes) - observation_count + 1)
        for set_id, analyte in enumerate(panel.analytes[first : first + observation_count], start=1):
            segments.append(_observation(set_id, analyte, facility, collected, rng))
        if group == 1 and rng.random() < 0.08:
            segments.append(f"NTE|1|L|{rng.pick(_LAB_COMMENTS)}")
    return segments


def _observation(set_id: int, analyte: _Analyte, facility: _Facility, observed: str, rng: _Draws) -> str:
    value = max(0.0, rng.gauss(analyte.mean, analyte.sd))
    value_text = format(value, analyte.value_format)
    # The flag is judged on the value as sent, so a receiver can recompute it.
    shown = float(value_text)
    if shown < analyte.low:
        abnormal_flag = "L"
    elif shown > analyte.high:
        abnormal_flag = "H"
    else:
        abnormal_flag = facility.normal_flag
    units = f"{analyte.units}^{analyte.units}^UCUM" if facility.ucum_units else analyte.units
    return (
        f"OBX|{set_id}|NM|{analyte.code}^{analyte.name}^LN||{value_text}|{units}|{analyte.reference_range}"
        f"|{abnormal_flag}|||F|||{observed}"
    )


def _pharmacy_order(message_number: int, encounter: _Encounter, rng: _Draws) -> list[str]:
    stay_seconds = encounter.discharged_at - encounter.admitted_at
    ordered_at = encounter.admitted_at + 300 + int(rng.random() * stay_seconds * 0.5)
    segments = [
        _message_header(encounter, "PHARM", "RDE^O11", "RDE_O11", ordered_at + rng.between(5, 300), message_number),
        encounter.pid,
    ]
    if rng.random() < 0.75:
        segments.append(encounter.pv1_admitted)
    drug = rng.pick(encounter.service.drugs)
    days = rng.between(1, 10)
    starts_at = ordered_at + rng.between(0, 3_600)
    ends_at = starts_at + days * 86_400
    give_count = _DOSES_PER_DAY[drug.frequency] * days
    dispense_amount = give_count if drug.form == "INJ" else give_count * drug.give_amount
    segments.extend(
        (
            f"ORC|NW|RX{message_number:08d}|||||||{_hl7_datetime(ordered_at)}|||{encounter.attending_doctor}",
            f"RXE|1^{drug.frequency}^^{_hl7_datetime(starts_at)}^{_hl7_datetime(ends_at)}"
            f"|{drug.rxnorm}^{drug.name}^RXNORM|{drug.give_amount}||{drug.give_units}|{drug.form}"
            f"||||{dispense_amount}|{drug.dispense_units}|0|||RX{message_number:08d}",
            f"RXR|{drug.route}^{_ROUTE_NAMES[drug.route]}^HL70162",
        )
    )
    return segments


_MESSAGE_BUILDERS = (_admission, _lab_result, _pharmacy_order, _discharge)


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


def _issuer(facility: _Facility) -> str | None:
    return facility.identifier_issuer.split("&")[0] or None


PATIENT_POOL_SIZE = _PATIENT_POOL_SIZE


def synthetic_patient(seed: int, patient_number: int) -> SyntheticPatient:
    """Patient `patient_number` (0..PATIENT_POOL_SIZE-1) of the pool the HL7 corpus with `seed` draws from.

    Other synthetic corpora (DICOM) take their patients from here, so their records join the
    HL7 feeds on medical record number and its issuer, name and birth date.
    """
    if not 0 <= patient_number < _PATIENT_POOL_SIZE:
        raise ValueError(f"patient_number must be in 0..{_PATIENT_POOL_SIZE - 1}, got {patient_number}")
    patient = _patient(seed, patient_number)
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
