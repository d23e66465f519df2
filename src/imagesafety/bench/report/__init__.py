"""Report files of an evaluation: metrics.json, predictions.parquet, report.html."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from imagesafety.bench.report.files import write_metrics_json, write_predictions

if TYPE_CHECKING:
    from imagesafety.bench.evaluate import EvalResult
    from imagesafety.data import Dataset


def write_reports(
    result: EvalResult, out_dir: Path, dataset: Dataset | None = None, html: bool = True
) -> dict[str, Path]:
    """Write every report file into `out_dir` and return their paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics": write_metrics_json(result.metrics, out_dir / "metrics.json"),
        "predictions": write_predictions(result.predictions, out_dir / "predictions.parquet"),
    }
    if html:
        from imagesafety.bench.report.html import write_html_report

        files["html"] = write_html_report(result, out_dir / "report.html", dataset)
    return files
