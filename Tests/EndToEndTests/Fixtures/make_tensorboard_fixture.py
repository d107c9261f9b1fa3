#!/usr/bin/env python3
"""TensorBoard fixture: a short real run's metrics.jsonl and events file, checked with the
tensorboard package (the oracle) before they are kept.

    pip install tensorboard
    python3 Tests/EndToEndTests/Fixtures/make_tensorboard_fixture.py --rlhf .build/release/rlhf

Runs `rlhf sft` on the tiny preset (arith, 6 steps, evaluations at 3 and 6), reads the events file
with tensorboard's EventAccumulator and fails unless every scalar and step equals metrics.jsonl
(float32). Then copies both into tensorboard/ here: TensorBoardTests reads the events file back with
our own reader and writes the same scalars again, expecting the same bytes.
"""
import glob, json, os, shutil, subprocess, sys, tempfile

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

HERE = os.path.dirname(os.path.abspath(__file__))


def main(rlhf):
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        subprocess.run([rlhf, "sft", "data.task=arith", "train.steps=6", "train.batch_size=8", "train.micro_batch_size=8",
                        "train.warmup_steps=2", "eval.every=3", "eval.max_examples=16", "log.every=1", f"out={run}"],
                       check=True, capture_output=True)
        events = glob.glob(os.path.join(run, "events.out.tfevents.*"))
        assert len(events) == 1, events
        metrics = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
        expected = {}
        for m in metrics:
            for k, v in m.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    expected.setdefault(k, []).append((m["step"], float(np.float32(v))))
        acc = EventAccumulator(run)
        acc.Reload()
        tags = acc.Tags()["scalars"]
        assert sorted(tags) == sorted(expected), (sorted(tags), sorted(expected))
        for tag in tags:
            got = [(e.step, float(np.float32(e.value))) for e in acc.Scalars(tag)]
            assert got == expected[tag], (tag, got, expected[tag])
        out = os.path.join(HERE, "tensorboard")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        shutil.copy(os.path.join(run, "metrics.jsonl"), os.path.join(out, "metrics.jsonl"))
        shutil.copy(events[0], os.path.join(out, "events.tfevents"))
        print(f"tensorboard read {len(tags)} scalars over {len(metrics)} lines, all equal to metrics.jsonl", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--rlhf") + 1])
