"""Hand-written HL7 files for end-to-end tests: a clean feed, a messy one, and a broken one."""

ADMISSION = (
    "MSH|^~\\&|ADT|GENERAL_HOSPITAL|EMR|CARDIOLOGY|20240305083000||ADT^A01^ADT_A01|CTRL0001|P|2.5\r"
    "EVN|A01|20240305083000\r"
    "PID|1||ENC77^^^GH^VN~123456^^^GH^MR||DOE^JANE^Q||19800102|F|||1 MAIN ST^^SPRINGFIELD^MA^01101||(555)0100-1234|||||ACC1|900-12-3456\r"
    "PV1|1|I|CARD^101^A^GH||||DOC1^HOUSE^GREGORY^^^DR|||CAR\r"
)
LAB_RESULT = (
    "MSH|^~\\&|LAB|GENERAL_HOSPITAL|EMR|CARDIOLOGY|20240305091500||ORU^R01^ORU_R01|CTRL0002|P|2.5\r"
    "PID|1||123456^^^GH^MR||DOE^JANE^Q||19800102|F|||1 MAIN ST^^SPRINGFIELD^MA^01101\r"
    "OBR|1|PL1|FL1|24323-8^Comprehensive metabolic panel^LN|||20240305090000\r"
    "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F\r"
    "OBX|2|NM|2951-2^Sodium^LN||140|mmol/L|135-145|N|||F\r"
)
# A discharge as some interface engines write it: \n endings, other encoding characters
# (components `$`, subcomponents `@`), an escaped subcomponent separator, MLLP framing.
MESSY_DISCHARGE = (
    b"\x0bMSH#$~\\@#ADT#MEDICAL_CENTER#EMR#ONCOLOGY#20240306120000##ADT$A03#CTRL0003#P#2.4\n"
    b"EVN#A03#20240306120000\n"
    b"PID#1##555$$$MC$MR##SMITH\\T\\JONES$ANN##19350704#F###9 ELM ST$$BOSTON$MA$02115\n"
    b"PV1#1#I#ONC$2$B\n\x1c\r"
)
BROKEN = "MSH|^~\\&|ADT\rPID|1||999999^^^GH^MR||SECRETNAME^SECRET\r"


def clean_feed() -> bytes:
    return (ADMISSION + LAB_RESULT).encode()


def feed_with_broken_message() -> bytes:
    return (ADMISSION + BROKEN + LAB_RESULT).encode()
