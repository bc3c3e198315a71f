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
