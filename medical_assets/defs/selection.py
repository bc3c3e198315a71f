"""What a step reports when only some of its assets were selected.

A step reads its input once and publishes its tables together: the PHI tables of one parse share
the part names that de-identification joins on, and the de-identified tables pass one leak check.
So selecting one of them refreshes the set. The selected assets are the step's outputs; the others,
published in the same commit, are recorded as materialized too, so that lineage says what changed.
"""

from collections.abc import Iterable, Iterator

import dagster as dg


def selected_results(context: dg.AssetExecutionContext, results: Iterable[dg.MaterializeResult]) -> Iterator[dg.MaterializeResult]:
    """Yield the results of the selected assets; log the others as materializations of this run."""
    selected = context.selected_asset_keys
    for result in results:
        if result.asset_key in selected:
            yield result
        else:
            metadata = {**(result.metadata or {}), "published with": dg.MetadataValue.text(_names(selected))}
            context.log_event(dg.AssetMaterialization(asset_key=result.asset_key, metadata=metadata))


def _names(keys: Iterable[dg.AssetKey]) -> str:
    return ", ".join(sorted(key.to_user_string() for key in keys)) or "its checks"
