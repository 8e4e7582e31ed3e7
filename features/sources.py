"""Feast offline sources: Parquet exports of the Delta feature tables at a known version.

Feast's DuckDB offline store reads Delta only through DuckDB's `delta` extension, which is
downloaded at run time; exporting the exact Delta version to Parquet keeps the source
version-exact and works offline. `export` writes them (atomically, file by file).
"""

from __future__ import annotations

import os
from pathlib import Path

from feast import FileSource
from feast.data_format import ParquetFormat

from ray_jobs.features import FEATURE_TABLES, FeatureTable


def source_path(offline_dir: str, ft: FeatureTable) -> str:
    return f"{offline_dir.rstrip('/')}/{ft.table.replace('.', '__')}.parquet"


def sources(offline_dir: str) -> dict[str, FileSource]:
    return {
        ft.table: FileSource(
            name=f"{ft.kind}_source",
            path=source_path(offline_dir, ft),
            file_format=ParquetFormat(),
            timestamp_field="event_ts",
            description=f"{ft.table} (Delta), exported to Parquet at a recorded version",
            owner=ft.owner,
            tags={"delta_table": ft.table},
        )
        for ft in FEATURE_TABLES
    }


def export(
    table_paths: dict[str, str],
    versions: dict[str, int],
    offline_dir: str,
    storage_options: dict[str, str] | None = None,
) -> None:
    """Write each feature table at `versions[table]` to its Parquet source path.

    The tables may be on the object store (`storage_options` from `lake.io.storage_options`);
    the exports are local files, which Feast's DuckDB offline store reads without extensions.
    """
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    Path(offline_dir).mkdir(parents=True, exist_ok=True)
    for ft in FEATURE_TABLES:
        delta = DeltaTable(table_paths[ft.table], version=versions[ft.table], storage_options=storage_options)
        table = delta.to_pyarrow_table()
        target = source_path(offline_dir, ft)
        tmp = f"{target}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, target)
