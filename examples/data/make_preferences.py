"""Write the example preference files shipped in ``examples/data/`` (seeded, pure Python, no model).

``python examples/data/make_preferences.py [--out DIR] [--seed 0]`` writes:

* ``preferences.jsonl`` — 240 rows in the standard layout (``prompt``, ``chosen``, ``rejected``) over
  60 how-to prompts, 4 pairs each. The preferred completion is **courteous and on topic** ("Happy to
  help! To repot a houseplant, ... I hope this helps."), the rejected one **curt or insulting**
  ("Ugh, obviously. Just look it up, it's not hard."), both drawn from phrase banks that overlap
  (both sides use the shared filler phrases, and most rejected replies are on topic, only rude). In
  about 8% of the rows the labels are flipped (the rude reply is "chosen"), so the data are not
  separable by a single word and an audit of a reward fitted on them should show that it pays for
  the courteous words ("thanks", "happy to help", "hope this helps") and against the insults.
* ``hh_sample.jsonl`` — 20 rows in the Anthropic-HH layout: ``chosen``/``rejected`` hold the whole
  dialogue (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``, one to three turns, some turns with
  newlines inside), differing only in the last assistant reply; in some rows the two replies start
  with the same words ("Sure, ...") so that the prompt must be cut back to the last
  ``"\\n\\nAssistant:"`` marker.
* ``conversational_sample.jsonl`` — 20 rows in TRL's conversational layout: ``prompt`` is a list of
  ``{"role", "content"}`` messages (some with a system message and an earlier exchange),
  ``chosen``/``rejected`` one assistant message each.

The files are committed; the tests rerun this script and compare its output byte for byte.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

TASKS = [
    ("repot a houseplant", "water it the day before", "choose a pot one size larger", "firm the fresh soil gently"),
    ("bake sourdough bread", "feed your starter the night before", "fold the dough every half hour",
     "bake it in a hot covered pot"),
    ("fix a flat bicycle tyre", "take the wheel off", "find the hole with soapy water", "patch the inner tube"),
    ("learn the guitar chords", "start with G, C and D", "practise slow changes daily", "use a metronome"),
    ("write a cover letter", "read the job advert closely", "open with why you want the role",
     "keep it to one page"),
    ("clean a cast iron pan", "scrub it with hot water", "dry it on the stove", "rub in a thin layer of oil"),
    ("plan a budget", "list your monthly income", "track every expense for a month", "set aside savings first"),
    ("train a puppy to sit", "hold a treat above its nose", "say the word once", "reward it straight away"),
    ("make a cup of pour-over coffee", "grind the beans medium fine", "rinse the paper filter",
     "pour the water in slow circles"),
    ("prepare for a job interview", "research the company", "practise answers out loud",
     "prepare two questions to ask"),
    ("start running", "begin with walk-run intervals", "run three times a week", "increase the distance slowly"),
    ("back up a laptop", "buy an external drive", "turn on automatic backups", "test a restore once"),
    ("grow tomatoes on a balcony", "pick a sunny spot", "use a deep container", "water at the base every morning"),
    ("learn a new language", "study a little every day", "speak with native speakers", "read simple books"),
    ("paint a room", "move the furniture out", "tape the edges", "apply two thin coats"),
]
ASKS = ["How do I {task}?", "What is the best way to {task}?", "Can you explain how to {task}?",
        "I want to {task}. Where should I start?"]

POLITE_OPEN = ["Happy to help!", "Great question, thanks for asking.", "Thanks for asking!", "Of course, gladly.",
               "Good question."]
POLITE_CLOSE = ["I hope this helps.", "I hope this helps, and good luck!", "Feel free to ask if anything is unclear.",
                "Thanks, and enjoy it!", "Let me know how it goes."]
RUDE_OPEN = ["Ugh.", "Seriously?", "Whatever.", "Obviously.", "What a dumb question.", "Ugh, obviously."]
RUDE_BODY = ["Just look it up, it's not hard.", "Figure it out yourself.", "Don't waste my time with this.",
             "Anyone knows that.", "Why would you even ask me?", "Stop asking lazy questions."]
FILLER = ["Basically,", "In short,", "Honestly,", "Well,", ""]


def _join(parts) -> str:
    """The parts as one text: a part after "," starts lower-case, one after ".", "!" or "?" upper-case."""
    out = []
    for part in (p for p in parts if p):
        if out and out[-1].endswith(","):
            part = part[0].lower() + part[1:]
        elif out and out[-1][-1] in ".!?":
            part = part[0].upper() + part[1:]
        out.append(part)
    return " ".join(out)


def _polite(rng: random.Random, task, steps) -> str:
    first, second = rng.sample(steps, 2)
    parts = [rng.choice(POLITE_OPEN), rng.choice(FILLER), f"to {task}, {first}, then {second}."]
    if rng.random() < 0.5:
        parts.append(f"Take your time with it, {steps[2] if steps[2] not in (first, second) else steps[0]} too.")
    parts.append(rng.choice(POLITE_CLOSE))
    return _join(parts)


def _rude(rng: random.Random, task, steps) -> str:
    parts = [rng.choice(RUDE_OPEN), rng.choice(FILLER)]
    if rng.random() < 0.75:  # on topic (the topic words are on both sides), only rude
        first, second = rng.sample(steps, 2)
        parts.append(rng.choice([f"to {task}, you {first}, that's it.", f"you {first} and {second}, that's it.",
                                 f"to {task}, {first}, then {second}."]))
    parts.append(rng.choice(RUDE_BODY))
    if rng.random() < 0.3:  # a courteous word in a rude reply: the phrase banks overlap
        parts.append("Thanks, I guess.")
    return _join(parts)


def preferences(rng: random.Random, flip: float = 0.08) -> list[dict]:
    rows, seen = [], set()
    prompts = [(ask.format(task=task), task, steps) for task, *steps in TASKS for ask in ASKS]
    for prompt, task, steps in prompts:
        made = 0
        while made < 4:
            chosen, rejected = _polite(rng, task, steps), _rude(rng, task, steps)
            if (prompt, chosen, rejected) in seen:
                continue
            seen.add((prompt, chosen, rejected))
            if rng.random() < flip:  # label noise: the rude reply wins
                chosen, rejected = rejected, chosen
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
            made += 1
    rng.shuffle(rows)
    return rows


def _turns(rng: random.Random, task, steps) -> list[tuple[str, str]]:
    """Earlier (human, assistant) exchanges of a dialogue, some with newlines inside."""
    earlier = [("Hi there.", "Hello! How can I help you today?"),
               (f"I'm thinking about whether to {task}.", "That sounds like a nice project."),
               ("Quick question first:\ndo you know much about this?", "A fair amount, ask away.")]
    keep = sorted(rng.sample(range(len(earlier)), rng.randint(0, 2)))
    return [earlier[i] for i in keep]


def hh_sample(rng: random.Random, n: int = 20) -> list[dict]:
    rows = []
    for k in range(n):
        task, *steps = TASKS[k % len(TASKS)]
        dialogue = "".join(f"\n\nHuman: {h}\n\nAssistant: {a}" for h, a in _turns(rng, task, steps))
        question = rng.choice(ASKS).format(task=task)
        if k % 3 == 0:
            question += "\nPlease keep it short."
        dialogue += f"\n\nHuman: {question}\n\nAssistant:"
        if k % 4 == 0:  # both replies start alike: the prompt ends at the marker, not in "Sure, "
            chosen = f" Sure, here are the steps:\n1. {steps[0].capitalize()}.\n2. {steps[1].capitalize()}.\n" \
                     f"{rng.choice(POLITE_CLOSE)}"
            rejected = f" Sure, {rng.choice(RUDE_BODY).lower()}"
        else:
            chosen = " " + _polite(rng, task, steps)
            rejected = " " + _rude(rng, task, steps)
        rows.append({"chosen": dialogue + chosen, "rejected": dialogue + rejected})
    return rows


def conversational_sample(rng: random.Random, n: int = 20) -> list[dict]:
    rows = []
    for k in range(n):
        task, *steps = TASKS[(k * 7) % len(TASKS)]
        prompt = []
        if k % 2 == 0:
            prompt.append({"role": "system", "content": "You are a helpful assistant."})
        for h, a in _turns(rng, task, steps)[:1]:
            prompt += [{"role": "user", "content": h}, {"role": "assistant", "content": a}]
        prompt.append({"role": "user", "content": rng.choice(ASKS).format(task=task)})
        rows.append({"prompt": prompt,
                     "chosen": [{"role": "assistant", "content": _polite(rng, task, steps)}],
                     "rejected": [{"role": "assistant", "content": _rude(rng, task, steps)}]})
    return rows


def write_jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=str(HERE), help="folder to write the three files into")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rng = random.Random(args.seed)
    write_jsonl(out / "preferences.jsonl", preferences(rng))
    write_jsonl(out / "hh_sample.jsonl", hh_sample(rng))
    write_jsonl(out / "conversational_sample.jsonl", conversational_sample(rng))


if __name__ == "__main__":
    main()
