"""A generated task where the base model measurably fails: extract an order as fixed-schema JSON.

Every example is built from seeded random choices, so the data is the project's own and the
answer is known exactly. The schema (key names, order, types, compact separators) is arbitrary,
which a model only reproduces after fine-tuning.
"""

from __future__ import annotations

import json
import random

INSTRUCTION = (
    "Extract the order from the message. Answer with JSON only, exactly in this form: "
    '{"customer": str, "item": str, "qty": int, "city": str, "urgent": bool}'
)
FIRST = ["Maria", "John", "Aisha", "Wei", "Lukas", "Sofia", "Omar", "Yuki", "Elena", "Tom", "Priya", "Carlos",
         "Anna", "Kofi", "Mei", "Ivan", "Lea", "Sam", "Nora", "Ravi"]
LAST = ["Lopez", "Smith", "Khan", "Chen", "Muller", "Rossi", "Haddad", "Tanaka", "Petrova", "Brown", "Patel",
        "Garcia", "Novak", "Mensah", "Wang", "Ivanov", "Dubois", "Lee", "Berg", "Singh"]
ITEMS = ["green tea", "coffee beans", "printer paper", "olive oil", "desk lamps", "rice", "batteries", "notebooks",
         "face masks", "water filters", "cables", "honey", "gloves", "light bulbs", "soap", "chairs"]
CITIES = ["Lyon", "Berlin", "Madrid", "Osaka", "Toronto", "Nairobi", "Lima", "Oslo", "Pune", "Austin", "Porto",
          "Krakow", "Hanoi", "Dublin", "Seoul", "Cairo"]
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 10: "ten", 12: "twelve"}
TEMPLATES = [
    "Hi, this is {name}. Please send {qty} boxes of {item} to {city}.{urgent}",
    "{name} here - we need {qty} {item} delivered in {city}.{urgent}",
    "Order request from {name}: {qty} x {item}, ship to {city}.{urgent}",
    "Could you deliver {qty} units of {item} to our {city} office? Thanks, {name}.{urgent}",
    "{urgent_lead}Ship {qty} packs of {item} to {city} for {name}.",
    "Dear team, {name} would like {qty} cartons of {item} sent to {city}.{urgent}",
]


def make_example(rng: random.Random) -> dict:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    qty = rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 24, 30, 50])
    qty_text = NUMBER_WORDS[qty] if qty in NUMBER_WORDS and rng.random() < 0.3 else str(qty)
    item, city = rng.choice(ITEMS), rng.choice(CITIES)
    urgent = rng.random() < 0.4
    template = rng.choice(TEMPLATES)
    text = template.format(
        name=name, qty=qty_text, item=item, city=city,
        urgent=rng.choice([" It's urgent!", " This is urgent, please rush.", " ASAP please."]) if urgent else "",
        urgent_lead="URGENT: " if urgent else "",
    )
    answer = {"customer": name, "item": item, "qty": qty, "city": city, "urgent": urgent}
    return {"instruction": INSTRUCTION, "input": text, "output": json.dumps(answer)}


def make_dataset(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [make_example(rng) for _ in range(n)]


def parse_answer(text: str) -> dict | None:
    """The JSON object in a model's answer, or None when it is not valid JSON."""
    try:
        value = json.loads(text.strip())
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_jsonl(rows: list[dict], path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
