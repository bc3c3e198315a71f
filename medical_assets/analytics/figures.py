"""The report files: names and sizes, apart from the drawing code so that listing them is cheap
(plotly and matplotlib take a second to import)."""

DASHBOARD_FILE = "dashboard.html"
PNG_DPI = 100
# Width and height in pixels of each PNG figure.
PNG_SIZES = {
    "utilization.png": (1500, 850),
    "demographics.png": (1000, 600),
    "labs.png": (1500, 1100),
    "imaging.png": (1500, 600),
    "dicom_preview.png": (1200, 1000),
}

# The files drawn together in one worker task, in groups of about equal drawing time (measured on
# the default data: the dashboard 1.8 s, the preview 1.8 s, labs 1.4 s, utilization 1.0 s, imaging
# 0.4 s, demographics 0.2 s), so that the workers draw them side by side.
REPORT_GROUPS = (
    (DASHBOARD_FILE,),
    ("dicom_preview.png",),
    ("labs.png", "imaging.png"),
    ("utilization.png", "demographics.png"),
)
