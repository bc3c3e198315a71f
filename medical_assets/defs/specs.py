"""The shape every stage's tables share: one spec per table, and one step that publishes them together."""

import dagster as dg

from medical_assets.defs import groups, leak_gate


def table_spec(key: dg.AssetKey, deps, group: str, code_version: str, kinds: set[str], description: str) -> dg.AssetSpec:
    """A table (or folder of files) of the PHI or de-identified zone, owned by us, made on Ray."""
    return dg.AssetSpec(
        key,
        deps=deps,
        group_name=group,
        owners=groups.OWNERS,
        code_version=code_version,
        kinds={"ray", *kinds},
        description=description,
        tags={"zone": "deid" if key.path[0] == "deid" else "phi"},
    )


def publishing_step(name: str, specs: list[dg.AssetSpec], leak_check: str | None = None, scanned: str = ""):
    """The multi-asset of a step that publishes `specs` together: any subset may be selected (see
    `selection`), and each of its de-identified assets carries the step's leak check."""
    published = [spec.key for spec in specs if spec.key.path[0] == "deid"]
    return dg.multi_asset(
        name=name,
        specs=specs,
        check_specs=leak_gate.check_specs(leak_check, published, scanned) if leak_check else None,
        pool=groups.RAY_POOL,
        can_subset=True,
    )
