"""Write examples/data/acme-1min.csv: one session of synthetic ACME quotes laid out like a quote
vendor's export (Date and Time in New York time, the close called Last, an extra column), the
sample the README loads with `accessd data load`. Run: .venv/bin/python tools/make_sample_csv.py
"""

from __future__ import annotations

import csv
import sys
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.data import MARKET_TZ, SynthParams, synth_days  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "examples" / "data" / "acme-1min.csv"


def main() -> None:
    params = SynthParams("ACME", date(2026, 3, 2), 1, seed=7, start_price=42.5)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["Date", "Time", "Open", "High", "Low", "Last", "Volume", "VWAP"])
        for day in synth_days(params):
            for q in day:
                local = datetime.fromtimestamp(q.ts / 1000, UTC).astimezone(MARKET_TZ)
                vwap = (q.high + q.low + q.close) / 3
                out.writerow([local.strftime("%Y-%m-%d"), local.strftime("%H:%M"),
                              f"{q.open:.2f}", f"{q.high:.2f}", f"{q.low:.2f}",
                              f"{q.close:.2f}", q.volume, f"{vwap:.4f}"])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
