"""Labels that contradict each other: one table of rules, each an expression that no face can satisfy.

CelebA's annotators labelled each attribute on its own, so some images carry label
sets no face has (a beard on a face labelled not male, bangs on a bald head). The
rules are counted and listed by the dedupe stage; which label of a contradicting
set is wrong is a question for the label-error search, not for a rule.
"""

from __future__ import annotations

import pandas as pd

from faceattrs.core import expressions

HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")

# name -> (expression that is true on a contradiction, why no face satisfies it)
RULES: dict[str, tuple[str, str]] = {
    "beard_not_male": ("~Male & ~No_Beard", "a beard on a face labelled not male"),
    "facial_hair_not_male": (
        "~Male & (Goatee | Mustache | Sideburns | 5_o_Clock_Shadow)",
        "a goatee, mustache, sideburns or stubble on a face labelled not male",
    ),
    "bald_bangs": ("Bald & Bangs", "bangs need hair on the head"),
    "straight_and_wavy": ("Straight_Hair & Wavy_Hair", "hair is straight or wavy, not both"),
    "two_hair_colours": (
        " | ".join(f"({a} & {b})" for k, a in enumerate(HAIR_COLOURS) for b in HAIR_COLOURS[k + 1 :]),
        "CelebA's hair colours exclude each other",
    ),
}


def contradictions(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (image, rule) that holds: image_id, rule, and the labels the rule reads."""
    rows = []
    for name, (expression, _) in RULES.items():
        hit = expressions.evaluate(expression, labels)
        read = expressions.names(expression)
        for image_id, values in labels.loc[hit, list(read)].iterrows():
            shown = " ".join(f"{a}={int(v)}" for a, v in values.items())
            rows.append({"image_id": image_id, "rule": name, "labels": shown})
    return pd.DataFrame(rows, columns=["image_id", "rule", "labels"])


def rule_table() -> list[tuple[str, str, str]]:
    """(name, expression, why) of every rule, for the report."""
    return [(name, expression, why) for name, (expression, why) in RULES.items()]
