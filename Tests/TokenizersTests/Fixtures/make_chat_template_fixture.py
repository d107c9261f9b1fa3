#!/usr/bin/env python3
"""Chat-template fixture: every chat template TRL ships (trl/chat_templates/*.jinja) and a ChatML
one, rendered by transformers (`render_jinja_template`, what apply_chat_template(tokenize=False)
uses) for conversations chosen to be awkward: system messages, several turns, empty contents,
text that looks like Jinja, TRL's list-form content, with and without the generation prompt.
A rendering transformers refuses (a template's raise_exception) is recorded as an error.

    pip install trl transformers
    python3 Tests/TokenizersTests/Fixtures/make_chat_template_fixture.py

Writes chat-templates.json: {"templates": [{"name", "template", "cases": [{"conversation",
"add_generation_prompt", "rendered" | "error"}]}], "conversations": [...], "kwargs": {...},
"today": "YYYY-MM-DD"}.
"""
import datetime, glob, json, os

import trl
import transformers.utils.chat_template_utils as chat_template_utils
from transformers.utils.chat_template_utils import render_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
    [{"role": "user", "content": "Show {{ x }} and {% if y %} literally, {# too #}"}, {"role": "assistant", "content": "Sure: '{{' and \"%}\"\n\n  done "}],
    [{"role": "system", "content": "Sys"}, {"role": "user", "content": [{"type": "text", "text": "list form"}]},
     {"role": "assistant", "content": [{"type": "text", "text": "reply"}]}],
    [{"role": "user", "content": "café 日本 🙂\ttab"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "again"},
     {"role": "assistant", "content": "done"}],
]
# Pinned so that templates reading the date (strftime_now) render the same everywhere.
KWARGS = {"bos_token": "<s>", "eos_token": "</s>", "date_string": "26 Jul 2024"}
# strftime_now reads the clock (gpt-oss prints "Current date"): pinned too, and recorded for the test.
TODAY = datetime.datetime(2026, 12, 1)


class PinnedClock(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return TODAY


chat_template_utils.datetime = PinnedClock


def main():
    folder = os.path.join(os.path.dirname(trl.__file__), "chat_templates")
    templates = [("chatml", CHATML)] + [(os.path.basename(p)[:-6], open(p).read()) for p in sorted(glob.glob(os.path.join(folder, "*.jinja")))]
    out = []
    for name, template in templates:
        cases = []
        for k, conversation in enumerate(CONVERSATIONS):
            for prompt in (False, True):
                case = {"conversation": k, "add_generation_prompt": prompt}
                try:
                    case["rendered"] = render_jinja_template([conversation], chat_template=template, add_generation_prompt=prompt, **KWARGS)[0][0]
                except Exception as e:  # the template refused the conversation
                    case["error"] = f"{type(e).__name__}: {e}"
                cases.append(case)
        out.append({"name": name, "template": template, "cases": cases})
    with open(os.path.join(HERE, "chat-templates.json"), "w") as f:
        json.dump({"trl": trl.__version__, "transformers": __import__("transformers").__version__, "kwargs": KWARGS,
                   "today": TODAY.strftime("%Y-%m-%d"), "conversations": CONVERSATIONS, "templates": out}, f, ensure_ascii=False)
    rendered = sum("rendered" in c for t in out for c in t["cases"])
    print(f"{len(out)} templates, {rendered} renderings, {sum(len(t['cases']) for t in out) - rendered} refusals")


if __name__ == "__main__":
    main()
