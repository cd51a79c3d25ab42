"""Training logs as TSV (`dvc plots show logs/train.tsv -x step -y loss`)."""
from __future__ import annotations

import csv
from pathlib import Path


class TSVLog:
    """Appends rows of scalars; a new key extends the header (the file is rewritten once)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f, delimiter="\t"))

    def _write(self, rows: list[dict], header: list[str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, header, delimiter="\t", restval="")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)

    def append(self, row: dict) -> None:
        header = self._header()
        if header is None or set(row) - set(header):
            rows = self.rows()
            self._write(rows + [row], (header or []) + [k for k in row if k not in (header or [])])
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, header, delimiter="\t", restval="").writerow(row)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (used when resuming from a checkpoint)."""
        header = self._header()
        if header is not None:
            self._write([r for r in self.rows() if int(r["step"]) <= step], header)

    def _header(self) -> list[str] | None:
        if not self.path.is_file():
            return None
        with open(self.path, newline="") as f:
            return next(csv.reader(f, delimiter="\t"), None)
