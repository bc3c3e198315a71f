"""The DICOM previews of the dashboards: which exported thumbnails are shown, how they are
labelled (modality and a short index, never a UID) and how they are laid out."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from medical_assets.analytics.chart_data import modality

MAX_PREVIEWS = 24  # thumbnails drawn; more would make the page heavy without telling more
HISTOGRAM_BINS = 32


@dataclass(frozen=True)
class Preview:
    label: str  # modality and index, e.g. "CT 2": never the UID
    pixels: np.ndarray  # THUMBNAIL_SIZE x THUMBNAIL_SIZE in [0, 1]
    histogram: np.ndarray  # pixel counts in HISTOGRAM_BINS bins over [0, 1]


def previews(thumbnails: pa.Table | None, images: pa.Table | None) -> list[Preview]:
    """Up to MAX_PREVIEWS thumbnails, taken in turn from each modality so every modality shows.

    With `images`, a thumbnail is drawn only when its image row is there and names no burned-in
    risk: the thumbnails table should hold cleared images only, and this keeps a stray one out.
    """
    if thumbnails is None or thumbnails.num_rows == 0:
        return []
    uids = thumbnails.column("sop_instance_uid").to_pylist()
    pixels = thumbnails.column("thumbnail").combine_chunks().to_numpy_ndarray()
    cleared = _cleared_modalities(images)
    by_modality: dict[str, list[tuple[str, np.ndarray]]] = {}
    for uid, image in zip(uids, pixels):
        if cleared is not None and uid not in cleared:
            continue
        name = cleared[uid] if cleared is not None else "image"
        by_modality.setdefault(name, []).append((uid or "", image))
    chosen = _round_robin(
        {name: sorted(items, key=lambda item: item[0]) for name, items in sorted(by_modality.items())}
    )
    return [
        _preview(f"{name} {index}", image)
        for name, items in chosen.items()
        for index, (_, image) in enumerate(items, start=1)
    ]


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns of a preview grid: a little wider than square, as an image sits on its histogram."""
    columns = min(count, 6, math.ceil(math.sqrt(count * 1.3)))
    return math.ceil(count / columns), columns


def _cleared_modalities(images: pa.Table | None) -> dict[str, str] | None:
    if images is None:
        return None
    columns = [name for name in ("sop_instance_uid", "modality", "burned_in_risk") if name in images.column_names]
    return {
        row["sop_instance_uid"]: modality(row)
        for row in images.select(columns).to_pylist()
        if row.get("sop_instance_uid") and row.get("burned_in_risk") is None
    }


def _round_robin(groups: dict[str, list]) -> dict[str, list]:
    chosen: dict[str, list] = {name: [] for name in groups}
    taken = 0
    for position in range(max((len(items) for items in groups.values()), default=0)):
        for name, items in groups.items():
            if position < len(items) and taken < MAX_PREVIEWS:
                chosen[name].append(items[position])
                taken += 1
    return {name: items for name, items in chosen.items() if items}


def _preview(label: str, image: np.ndarray) -> Preview:
    pixels = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
    histogram, _ = np.histogram(pixels, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    return Preview(label, pixels, histogram)
