"""The built-in instruction-following reward (`rewards.instructions`, swift-rlhf's
InstructionVerifier) written in Python as a TRL-style reward: the share of a prompt's rules that
the completion keeps. The prompt's `answer` column holds the rules' specs, ";"-joined
("max_words|30;keyword|river|2"). Rule for rule as Sources/Alignment/InstructionConstraints.swift.

    rlhf ppo --config configs/smollm2-ifeval.yaml rewards.instructions=0 rewards.external=1 \\
        rewards.external_command="python3 scripts/reward_server.py examples/rewards/instructions.py:reward"
"""
import json
import re
import unicodedata


def _strip_punctuation_and_symbols(word):
    def keep(c):
        return not unicodedata.category(c).startswith(("P", "S"))

    start, end = 0, len(word)
    while start < end and not keep(word[start]):
        start += 1
    while end > start and not keep(word[end - 1]):
        end -= 1
    return word[start:end]


def _has_letter(text):
    return any(c.isalpha() for c in text)


def keeps(spec, reply):
    """Whether `reply` keeps the rule `spec`."""
    parts = spec.split("|")
    kind = parts[0]
    text = reply.strip()
    words = text.split()
    if kind == "lowercase":
        return text == text.lower() and _has_letter(text)
    if kind == "all_capitals":
        return text == text.upper() and _has_letter(text)
    if kind == "no_commas":
        return text != "" and "," not in text
    if kind == "quoted":
        return len(text) > 1 and text.startswith('"') and text.endswith('"')
    if kind == "max_words":
        return len(words) > 0 and len(words) <= int(parts[1])
    if kind == "min_words":
        return len(words) >= int(parts[1])
    if kind == "bullets":
        lines = [line.strip() for line in text.splitlines()]
        return sum(1 for line in lines if line.startswith("* ") or line.startswith("- ")) == int(parts[1])
    if kind == "keyword":
        return re.findall(r"[^\W_]+", text.lower()).count(parts[1].lower()) >= int(parts[2])
    if kind == "end_phrase":
        return text.endswith(parts[1])
    if kind == "start_word":
        first = _strip_punctuation_and_symbols(words[0]) if words else ""
        return first.lower() == parts[1].lower()
    if kind == "json_key":
        body = text
        if body.startswith("```"):
            body = body.split("\n", 1)[1] if "\n" in body else ""
            if body.endswith("```"):
                body = body[:-3]
        try:
            value = json.loads(body)
        except ValueError:
            return False
        return isinstance(value, dict) and parts[1] in value
    raise ValueError(f"not an instruction rule: {spec}")


def reward(prompts, completions, answer, **kwargs):
    rewards = []
    for completion, specs in zip(completions, answer):
        rules = [s for s in (specs or "").split(";") if s]
        rewards.append(sum(keeps(s, completion) for s in rules) / len(rules) if rules else 0.0)
    return rewards
