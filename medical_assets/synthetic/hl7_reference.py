"""Reference tables of the synthetic HL7 corpus: facilities, names, places, lab tests, drugs and services."""

from typing import NamedTuple

from medical_assets.synthetic.draws import weighted


class Facility(NamedTuple):
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
FACILITIES = (
    Facility("GENERAL_HOSPITAL", "GH", "GH", "2.5.1", "UNICODE UTF-8", "MR", "N", True, 3),
    Facility("MEDICAL_CENTER", "MC", "MC", "2.6", "", "VN~MR", "", False, 2),
    Facility("REGIONAL_CLINIC", "RC", "", "2.4", "", "MR", "N", False, 1),
    Facility("UNIVERSITY_HOSPITAL", "UH", "UH&2.16.840.1.113883.19.5&ISO", "2.5", "UNICODE UTF-8", "MR~VN", "N", True, 2),
    Facility("COMMUNITY_HOSPITAL", "CH", "CH", "2.4", "", "VN~MR", "", False, 1),
    Facility("VALLEY_MEDICAL_CENTER", "VMC", "VMC", "2.5.1", "", "MR", "N", True, 1),
)
FACILITY_SHARES = weighted({facility: facility.weight for facility in FACILITIES})

GENDERS = weighted({"F": 49, "M": 48, "O": 1, "U": 2})
MARITAL_STATUSES = weighted({"S": 30, "M": 50, "D": 12, "W": 8})
PATIENT_CLASSES = weighted({"I": 55, "E": 25, "O": 20})

FAMILY_NAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR",
    "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ",
    "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT",
    "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES", "GREEN", "ADAMS", "NELSON", "BAKER", "HALL",
    "RIVERA", "CAMPBELL", "MITCHELL", "CARTER", "ROBERTS", "GOMEZ", "PHILLIPS", "EVANS",
    "TURNER", "DIAZ", "PARKER", "CRUZ", "EDWARDS", "COLLINS", "REYES",
)  # fmt: skip
FEMALE_GIVEN_NAMES = (
    "MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN", "JESSICA", "SARAH",
    "KAREN", "LISA", "NANCY", "BETTY", "MARGARET", "SANDRA", "ASHLEY", "EMILY", "DONNA",
    "MICHELLE", "CAROL", "AMANDA", "MELISSA", "DEBORAH", "STEPHANIE", "REBECCA", "LAURA",
    "SHARON", "CYNTHIA", "AMY", "ANGELA",
)  # fmt: skip
MALE_GIVEN_NAMES = (
    "JAMES", "ROBERT", "JOHN", "MICHAEL", "DAVID", "WILLIAM", "RICHARD", "JOSEPH", "THOMAS",
    "CHARLES", "CHRISTOPHER", "DANIEL", "MATTHEW", "ANTHONY", "MARK", "DONALD", "STEVEN", "PAUL",
    "ANDREW", "JOSHUA", "KENNETH", "KEVIN", "BRIAN", "GEORGE", "TIMOTHY", "RONALD", "EDWARD",
    "JASON", "JEFFREY", "RYAN",
)  # fmt: skip
GIVEN_NAMES = FEMALE_GIVEN_NAMES + MALE_GIVEN_NAMES
# Only feeds that declare UTF-8 in MSH-18 may carry these; the others are plain ASCII.
ACCENTED_FAMILY_NAMES = ("NÚÑEZ", "MÜLLER", "PEÑA", "GARCÍA", "LEFÈVRE", "JOHANSSON")
ACCENTED_FEMALE_GIVEN_NAMES = ("RENÉE", "ZOË", "SOFÍA", "CHLOÉ", "INÉS")
ACCENTED_MALE_GIVEN_NAMES = ("JOSÉ", "ANDRÉ", "JOAQUÍN", "RENÉ", "JÜRGEN")

# Six attending doctors per facility, with local staff IDs only: a national provider number
# could belong to someone real.
DOCTORS_BY_FACILITY = {
    facility.name: tuple(
        f"D{4_100 + 7 * doctor:05d}^{FAMILY_NAMES[(7 * doctor + 3) % len(FAMILY_NAMES)]}"
        f"^{GIVEN_NAMES[(11 * doctor + 5) % len(GIVEN_NAMES)]}^^^DR"
        for doctor in range(6 * facility_index, 6 * facility_index + 6)
    )
    for facility_index, facility in enumerate(FACILITIES)
}

STREET_NAMES = (
    "MAIN ST", "OAK AVE", "MAPLE DR", "CEDAR LN", "ELM ST", "PINE ST", "PARK AVE", "LAKE RD",
    "HILL ST", "RIVER RD", "CHURCH ST", "HIGH ST", "SPRING ST", "CENTER ST", "FOREST AVE",
    "MILL RD", "WALNUT ST", "SCHOOL ST", "MEADOW LN", "ORCHARD WAY",
)  # fmt: skip


class City(NamedTuple):
    name: str
    state: str
    zip3: str
    area_code: str
    weight: int


# ZIP3s that HIPAA Safe Harbor requires to be shown as 000 (under 20,000 people) carry weight 1,
# so the de-identification step has real cases to suppress.
CITIES = (
    City("BOSTON", "MA", "021", "617", 4),
    City("WORCESTER", "MA", "016", "508", 4),
    City("PROVIDENCE", "RI", "029", "401", 4),
    City("HARTFORD", "CT", "061", "860", 4),
    City("ALBANY", "NY", "122", "518", 4),
    City("PHILADELPHIA", "PA", "191", "215", 4),
    City("PITTSBURGH", "PA", "152", "412", 4),
    City("BALTIMORE", "MD", "212", "410", 4),
    City("RICHMOND", "VA", "232", "804", 4),
    City("CHARLOTTE", "NC", "282", "704", 4),
    City("ATLANTA", "GA", "303", "404", 4),
    City("COLUMBUS", "OH", "432", "614", 4),
    City("DETROIT", "MI", "482", "313", 4),
    City("CHICAGO", "IL", "606", "312", 4),
    City("MINNEAPOLIS", "MN", "554", "612", 4),
    City("SAINT LOUIS", "MO", "631", "314", 4),
    City("NASHVILLE", "TN", "372", "615", 4),
    City("DALLAS", "TX", "752", "214", 4),
    City("HOUSTON", "TX", "770", "713", 4),
    City("DENVER", "CO", "802", "303", 4),
    City("PHOENIX", "AZ", "850", "602", 4),
    City("SALT LAKE CITY", "UT", "841", "801", 4),
    City("SEATTLE", "WA", "981", "206", 4),
    City("PORTLAND", "OR", "972", "503", 4),
    City("SACRAMENTO", "CA", "958", "916", 4),
    City("CHARLESTOWN", "NH", "036", "603", 1),
    City("CANAAN", "VT", "059", "802", 1),
    City("NEW YORK", "NY", "102", "212", 1),
    City("WASHINGTON", "DC", "203", "202", 1),
    City("GRAND MARAIS", "MN", "556", "218", 1),
    City("VALENTINE", "NE", "692", "402", 1),
    City("BORGER", "TX", "790", "806", 1),
    City("YELLOWSTONE NATL PARK", "WY", "821", "307", 1),
    City("RAWLINS", "WY", "823", "307", 1),
    City("JACKSON", "WY", "830", "307", 1),
    City("KEMMERER", "WY", "831", "307", 1),
    City("SOCORRO", "NM", "878", "575", 1),
    City("TRUTH OR CONSEQUENCES", "NM", "879", "575", 1),
    City("TUCUMCARI", "NM", "884", "575", 1),
    City("BEATTY", "NV", "890", "775", 1),
    City("ELY", "NV", "893", "775", 1),
)
CITY_SHARES = weighted({city: city.weight for city in CITIES})

# Ages on 2024-01-01; the oldest band is what Safe Harbor's "90 or older" rule is for.
AGE_BANDS = weighted({(0, 17): 10, (18, 44): 27, (45, 64): 30, (65, 79): 20, (80, 89): 9, (90, 98): 4})

# HL7 table 0063, with the relationships an adult or a child patient would name.
ADULT_KIN = (("SPO", "SPOUSE"), ("CHD", "CHILD"), ("SIB", "SIBLING"), ("FND", "FRIEND"))
CHILD_KIN = (("MTH", "MOTHER"), ("FTH", "FATHER"))
KIN_GIVEN_NAMES = {"MTH": FEMALE_GIVEN_NAMES, "FTH": MALE_GIVEN_NAMES}

# AL1-2 allergen type, AL1-3 allergen, AL1-4 severity, AL1-5 reaction.
ALLERGY_COUNTS = weighted({0: 70, 1: 22, 2: 8})
ALLERGIES = (
    ("DA", "70618^PENICILLIN^RXNORM", "MO", "HIVES"),
    ("DA", "10180^SULFAMETHOXAZOLE^RXNORM", "MI", "RASH"),
    ("DA", "2670^CODEINE^RXNORM", "MO", "NAUSEA"),
    ("DA", "1191^ASPIRIN^RXNORM", "SV", "ANGIOEDEMA"),
    ("FA", "^PEANUTS", "SV", "ANAPHYLAXIS"),
    ("FA", "^SHELLFISH", "MO", "HIVES"),
    ("EA", "^LATEX", "MI", "CONTACT DERMATITIS"),
)


class Analyte(NamedTuple):
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
) -> Analyte:
    value_format = f".{decimals}f"
    reference_range = f"{low:{value_format}}-{high:{value_format}}"
    return Analyte(code, name, units, low, high, mean, sd, value_format, reference_range)


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


class Panel(NamedTuple):
    code: str  # LOINC, OBR-4
    name: str
    section: str  # OBR-24, HL7 table 0074
    analytes: tuple[Analyte, ...]


_BASIC_METABOLIC = Panel(
    "24321-2", "Basic metabolic panel", "CH",
    (_GLUCOSE, _UREA_NITROGEN, _CREATININE, _SODIUM, _POTASSIUM, _CHLORIDE, _CO2, _CALCIUM),
)  # fmt: skip
_COMPREHENSIVE_METABOLIC = Panel(
    "24323-8", "Comprehensive metabolic panel", "CH",
    _BASIC_METABOLIC.analytes + (_ALBUMIN, _PROTEIN, _ALKALINE_PHOSPHATASE, _ALT, _AST, _BILIRUBIN),
)  # fmt: skip
_HEPATIC_FUNCTION = Panel(
    "24325-3", "Hepatic function panel", "CH",
    (_ALBUMIN, _PROTEIN, _ALKALINE_PHOSPHATASE, _ALT, _AST, _BILIRUBIN),
)  # fmt: skip
_BLOOD_COUNT = Panel(
    "58410-2", "CBC panel", "HM", (_LEUKOCYTES, _ERYTHROCYTES, _HEMOGLOBIN, _HEMATOCRIT, _PLATELETS)
)
_LIPID = Panel(
    "24331-1", "Lipid panel", "CH",
    (_CHOLESTEROL, _TRIGLYCERIDE, _HDL_CHOLESTEROL, _LDL_CHOLESTEROL),
)  # fmt: skip

LAB_COMMENTS = (
    "Specimen slightly hemolyzed \\T\\ potassium may be falsely elevated",
    "Critical value called to nurse \\T\\ read back verified",
    "Fasting specimen",
    "Repeat collection requested by provider",
)


class Drug(NamedTuple):
    rxnorm: str
    name: str
    form: str  # RXE-6
    route: str  # RXR-1, HL7 table 0162
    give_amount: int  # RXE-3, in give_units
    give_units: str  # RXE-5
    frequency: str  # RXE-1.2
    dispense_units: str  # RXE-11


# RxNorm-style clinical drug codes for a demo corpus, not checked against a current RxNorm release.
_AMLODIPINE = Drug("197361", "amlodipine 5 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_LISINOPRIL = Drug("314076", "lisinopril 10 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_METOPROLOL = Drug("866514", "metoprolol tartrate 50 MG Oral Tablet", "TAB", "PO", 1, "TAB", "BID", "TAB")
_ATORVASTATIN = Drug("617310", "atorvastatin 20 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_WARFARIN = Drug("855332", "warfarin sodium 5 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_METFORMIN = Drug("861007", "metformin hydrochloride 500 MG Oral Tablet", "TAB", "PO", 1, "TAB", "BID", "TAB")
_ACETAMINOPHEN = Drug("313782", "acetaminophen 325 MG Oral Tablet", "TAB", "PO", 2, "TAB", "Q6H", "TAB")
_IBUPROFEN = Drug("310965", "ibuprofen 200 MG Oral Tablet", "TAB", "PO", 2, "TAB", "Q6H", "TAB")
_AMOXICILLIN = Drug("308191", "amoxicillin 500 MG Oral Capsule", "CAP", "PO", 1, "CAP", "TID", "CAP")
_SERTRALINE = Drug("312940", "sertraline 50 MG Oral Tablet", "TAB", "PO", 1, "TAB", "QD", "TAB")
_ENOXAPARIN = Drug("854235", "enoxaparin sodium 40 MG in 0.4 ML Prefilled Syringe", "INJ", "SC", 40, "mg", "QD", "EA")
_HEPARIN = Drug("1361615", "heparin sodium 5000 UNT/ML Injectable Solution", "INJ", "SC", 5000, "U", "Q8H", "EA")
_ONDANSETRON = Drug("1740467", "ondansetron 2 MG/ML Injectable Solution", "INJ", "IV", 4, "mg", "Q6H", "EA")
_MORPHINE = Drug("1732138", "morphine sulfate 2 MG/ML Injectable Solution", "INJ", "IV", 2, "mg", "Q4H", "EA")
_CEFTRIAXONE = Drug("1665021", "ceftriaxone 1000 MG Injection", "INJ", "IV", 1000, "mg", "QD", "EA")
_HALOPERIDOL = Drug("1719644", "haloperidol lactate 5 MG/ML Injectable Solution", "INJ", "IM", 5, "mg", "Q6H", "EA")
_SODIUM_CHLORIDE = Drug("313002", "sodium chloride 0.9 % Injectable Solution", "SOL", "IV", 1000, "mL", "Q12H", "mL")
_ACETAMINOPHEN_SUSPENSION = Drug("307668", "acetaminophen 32 MG/ML Oral Suspension", "SOL", "PO", 5, "mL", "Q6H", "mL")
_AMOXICILLIN_SUSPENSION = Drug("308182", "amoxicillin 50 MG/ML Oral Suspension", "SOL", "PO", 5, "mL", "TID", "mL")
_IBUPROFEN_SUSPENSION = Drug("197803", "ibuprofen 20 MG/ML Oral Suspension", "SOL", "PO", 5, "mL", "Q6H", "mL")

DOSES_PER_DAY = {"QD": 1, "BID": 2, "TID": 3, "Q8H": 3, "Q12H": 2, "Q6H": 4, "Q4H": 6}
ROUTE_NAMES = {"PO": "Oral", "IV": "Intravenous", "IM": "Intramuscular", "SC": "Subcutaneous"}


class Service(NamedTuple):
    code: str  # PV1-10
    clinic: str  # MSH-6: the department whose EMR receives the feed
    units: tuple[str, ...]  # PV1-3.1 for inpatients
    diagnoses: tuple[tuple[str, str, str], ...]  # ICD-10-CM code, its name, the admit reason
    panels: tuple[Panel, ...]
    drugs: tuple[Drug, ...]


SERVICES = {
    service.code: service
    for service in (
        Service(
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
        Service(
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
        Service(
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
        Service(
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
        Service(
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
        Service(
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
DISCHARGE_DISPOSITIONS = weighted({"01": 70, "06": 10, "03": 9, "02": 5, "07": 3, "20": 3})

CHILD_SERVICES = weighted({"PEDS": 85, "SURG": 10, "PSYCH": 5})
CHILDBEARING_AGE_SERVICES = weighted({"OB": 30, "MED": 30, "SURG": 15, "CAR": 10, "PSYCH": 15})
ADULT_SERVICES = weighted({"MED": 40, "SURG": 22, "CAR": 28, "PSYCH": 10})
