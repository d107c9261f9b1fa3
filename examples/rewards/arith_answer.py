"""A TRL-style reward for the arith task, written in Python: the built-in verifier's rule (1 when
the last integer of the completion is the answer) plus half its format rule (0 for a bare integer,
-1 otherwise), as swift-rlhf's ExactAnswerVerifier and IntegerFormatVerifier compute them.

    rlhf pipeline --config configs/arith-tiny.yaml rl.rewards.verifier=0 rl.rewards.format=0 \\
        rl.rewards.external=1 \\
        rl.rewards.external_command="python3 scripts/reward_server.py examples/rewards/arith_answer.py:reward"
"""
import re

INTEGER = re.compile(r"[+-]?\d+")


def reward(prompts, completions, answer, **kwargs):
    rewards = []
    for completion, expected in zip(completions, answer):
        # Runs of digits and minus signs that read as integers, as the Swift verifier splits them.
        integers = [t for t in re.split(r"[^0-9-]+", completion) if INTEGER.fullmatch(t)]
        correct = 1.0 if expected is not None and integers and integers[-1] == expected.strip() else 0.0
        bare = 0.0 if INTEGER.fullmatch(completion) else -1.0
        rewards.append(correct + 0.5 * bare)
    return rewards
