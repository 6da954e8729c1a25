"""results.csv is a complete, flat view of results.jsonl: every value of every row can be read back from it."""

from __future__ import annotations

import csv
import io
import json

from dekasim.sim.store import CSV_COLUMNS, ResultStore, csv_table


def _leaves(value, path=""):
    """(dotted path, value) for every leaf of a row, written here independently of the store's own flattening."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)
    else:
        yield path, value


def _parse(cell: str, like):
    if cell == "":
        return None
    if isinstance(like, str):
        return cell
    return json.loads(cell)


def assert_recoverable(rows: list[dict], csv_text: str) -> list[str]:
    """Every JSONL value of ``rows`` equals what its CSV cell(s) read back to; returns the header."""
    reader = csv.reader(io.StringIO(csv_text))
    header = next(reader)
    table = [dict(zip(header, cells)) for cells in reader]
    assert len(table) == len(rows) and len(set(header)) == len(header)
    paths = set()
    for row, cells in zip(rows, table):
        for path, value in _leaves(row):
            paths.add(path)
            if f"{path}_lo" in header:  # an interval: two columns
                lo, hi = value if value is not None else (None, None)
                assert (_parse(cells[f"{path}_lo"], 0.0), _parse(cells[f"{path}_hi"], 0.0)) == (lo, hi), path
            elif path in header:
                assert _parse(cells[path], value) == value, (path, cells[path], value)
                assert not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value))
            else:  # a table missing from this row: its columns are all empty
                assert value is None, path
                sub = [c for c in header if c.startswith(path + ".")]
                assert sub and all(cells[c] == "" for c in sub), path
    for column in header:  # no column that is not a field of some row
        base = column[:-3] if column.endswith(("_lo", "_hi")) and column not in paths else column
        assert base in paths or any(p.startswith(base + ".") for p in paths), column
    return header


ROWS = [
    {"codec": "digital", "codec_name": "digital", "snr_db": 10.0, "ber": 1.2e-3, "ber_ci95": [0.0011, 0.00138],
     "bler": 0.25, "bler_ci95": [0.1, 0.4], "bits": 123456789012, "status": "done", "seed": 2 ** 62 + 1,
     "psnr_db": 0.1 + 0.2, "psnr_db_ci95": None, "consistency_control": None,
     "info": {"mcs_index": 9.5, "source_codec": {"webp": 3, "jpeg": 1},
              "physics_notes": ["a note, with a comma", 'and "quotes"\nand a newline'],
              "variant_calibration_psnr_db": {'{"mcs": 5}': 21.5, '{"mcs": 9}': 23.25}}},
    {"codec": "DeKA-g (MAKD + CALA)", "codec_name": "preinstalled", "snr_db": 0.0, "ber": None, "ber_ci95": None,
     "bler": None, "bler_ci95": None, "bits": None, "status": "done", "seed": 3, "psnr_db": 25.0,
     "psnr_db_ci95": 0.5, "attribute_agreement": 0.85, "attribute_agreement_ci95": 0.02,
     "system": {"edge": "aligned", "metaword": True, "g_lora": True, "cala": False, "pack_sha256": "ab12"},
     "consistency_control": {"attribute_agreement": 0.91, "feature_cosine": 0.9},
     # what another change may add: interval tables and per-unit counts, never named here
     "intervals": {"psnr_db": {"lo": 24.5, "hi": 25.5, "method": "t", "units": "images"},
                   "agreement": [0.8, 0.9]},
     "per_unit": {"block_errors": [0, 2, 1]}, "info": {}},
]


def test_every_value_of_every_row_is_in_the_csv():
    columns, table = csv_table(ROWS)
    out = io.StringIO()
    csv.writer(out).writerows([columns, *table])
    header = assert_recoverable(ROWS, out.getvalue())
    # nested fields by dotted names, intervals as lo/hi, counted per unit as one JSON cell
    for name in ("system.edge", "system.pack_sha256", "consistency_control.feature_cosine", "info.mcs_index",
                 "info.source_codec.webp", "ber_ci95_lo", "ber_ci95_hi", "intervals.psnr_db.lo",
                 "intervals.psnr_db.method", "intervals.agreement_lo", "per_unit.block_errors"):
        assert name in header, name
    assert "ber_ci95" not in header and "consistency_control" not in header


def test_columns_are_the_union_in_a_stable_order():
    columns, _ = csv_table(ROWS)
    assert columns == csv_table(ROWS[::-1])[0]  # completion order (Ray) changes nothing
    lead = [c for c in columns if c.split(".")[0] in CSV_COLUMNS or c.rsplit("_", 1)[0] in CSV_COLUMNS]
    assert columns[:len(lead)] == lead and columns[0] == "codec"
    assert columns.index("ber_ci95_lo") == columns.index("ber") + 1
    rest = [c[:-3] if c.endswith(("_lo", "_hi")) else c for c in columns[len(lead):]]  # a field's lo, then hi
    keys = [("." in c, c) for c in rest]
    assert keys == sorted(keys)  # then the other fields, sorted, plain before nested


def test_store_writes_the_flat_view_after_each_row(tmp_path):
    manifest = {"scenario": {"name": "csv"}, "scenario_hash": "h", "date": "today"}
    with ResultStore(tmp_path, manifest) as store:
        for row in ROWS:
            store.append({**row, "point_id": row["codec"]})
    written = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert_recoverable(written, (tmp_path / "results.csv").read_text())
