import csv
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.atomic import atomic_file, write_json
from pipeline.core.params import load_params
from pipeline.data.ingest import ingest
from stages.common import ParamsOption, user_errors


@user_errors
def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for the Parquet shards.")] = Path("data/ingest"),
    report: Annotated[Path, typer.Option(help="Counts read/kept/skipped (DVC metrics).")] = Path("reports/ingest.json"),
    skipped: Annotated[Path, typer.Option(help="Every skipped file with its reason.")] = Path("reports/ingest_skipped.csv"),
) -> None:
    """Decode, clean, de-duplicate and split images into sharded Parquet."""
    result = ingest(load_params(params).ingest, out)
    write_json(report, result.summary)
    with atomic_file(skipped) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason", "detail"])
        writer.writerows(result.skipped)
    summary = result.summary
    typer.echo(f"ingest: kept {summary['kept']} of {summary['read']} "
               f"({summary['train']} train, {summary['val']} val), skipped {summary['skipped']}")
