#!/usr/bin/env python3
"""A small Parquet dataset as Hugging Face datasets ship them (Alpaca's instruction/output columns,
an extra column, a missing value written as NaN by pandas), and the JSONL that
scripts/parquet_to_jsonl.py makes of it; DataMappingTests trains from that JSONL with
data.prompt_key and data.completion_key, and converts the Parquet again when pyarrow is there.

    pip install pyarrow
    python3 Tests/EndToEndTests/Fixtures/make_parquet_fixture.py
"""
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
rows = [(a, b) for a in range(10, 40, 3) for b in range(5, 30, 7)][:32]
table = pa.table({
    "instruction": [f"{a}+{b}=" for a, b in rows],
    "output": [str(a + b) for a, b in rows],
    "difficulty": [float(a % 3) if a % 5 else float("nan") for a, _ in rows],
})
pq.write_table(table, os.path.join(HERE, "alpaca-style.parquet"), row_group_size=10)
subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "parquet_to_jsonl.py"), os.path.join(HERE, "alpaca-style.parquet"),
                "--out", os.path.join(HERE, "alpaca-style.jsonl")], check=True)
