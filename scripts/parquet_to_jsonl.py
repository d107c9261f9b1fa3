#!/usr/bin/env python3
"""Converts Parquet files (as Hugging Face datasets ship them) to JSONL that rlhf reads.

    pip install pyarrow
    python3 scripts/parquet_to_jsonl.py train-00000-of-00002.parquet train-00001-of-00002.parquet \\
        --out train.jsonl [--columns question,answer] [--limit 1000]

One JSON object per row, the columns under their own names (map them to ours with data.prompt_key,
data.answer_key, …); nested lists and structs (messages, ShareGPT conversations) stay nested.
Dates and times become ISO 8601 text; a value JSON cannot hold (bytes, such as images) is an error
naming the file, the row and the column.
"""
import argparse
import datetime
import decimal
import json
import sys


def plain(value, place):
    """`value` with every part JSON can write; raises ValueError naming `place` otherwise."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value:
            return None  # pandas writes a missing value as NaN
        if value in (float("inf"), float("-inf")):
            raise ValueError(f"{place}: {value} is not a JSON number")
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v, f"{place}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{place}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bytes, bytearray)):
        raise ValueError(f"{place}: bytes ({len(value)}) have no JSON form; leave the column out with --columns")
    raise ValueError(f"{place}: a {type(value).__name__} has no JSON form")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parquet", nargs="+", help="Parquet files, read in this order")
    parser.add_argument("--out", required=True, help="the JSONL file to write")
    parser.add_argument("--columns", help="comma-separated columns to keep (default: all)")
    parser.add_argument("--limit", type=int, help="stop after this many rows")
    args = parser.parse_args()
    try:
        import pyarrow.parquet as pq
    except ImportError:
        sys.exit("parquet_to_jsonl: needs pyarrow (pip install pyarrow)")
    columns = args.columns.split(",") if args.columns else None
    written = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for path in args.parquet:
            row_number = 0
            for batch in pq.ParquetFile(path).iter_batches(columns=columns):  # a batch at a time, not the file
                for row in batch.to_pylist():
                    row_number += 1
                    if args.limit is not None and written >= args.limit:
                        break
                    try:
                        record = {k: plain(v, f"{path}: row {row_number}, column '{k}'") for k, v in row.items()}
                    except ValueError as error:
                        sys.exit(f"parquet_to_jsonl: {error}")
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    written += 1
    print(json.dumps({"out": args.out, "rows": written}))


if __name__ == "__main__":
    main()
