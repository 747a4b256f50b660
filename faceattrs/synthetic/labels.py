"""Labels of the synthetic CelebA: CelebA's attribute frequencies, its obvious correlations, identity-level traits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceattrs.data.celeba import ATTRIBUTES, POSITIVE_RATES

P_MALE = POSITIVE_RATES["Male"]

# Share of each attribute's positives that are men; attributes absent here are independent of Male.
MALE_SHARE = {
    "5_o_Clock_Shadow": 1.0,
    "Goatee": 1.0,
    "Mustache": 1.0,
    "Sideburns": 1.0,
    "Bald": 0.97,
    "Wearing_Necktie": 0.95,
    "Receding_Hairline": 0.65,
    "Bushy_Eyebrows": 0.7,
    "Big_Nose": 0.75,
    "Chubby": 0.75,
    "Double_Chin": 0.7,
    "Gray_Hair": 0.7,
    "No_Beard": 0.3016,
    "Young": 0.35,
    "Attractive": 0.25,
    "High_Cheekbones": 0.3,
    "Wavy_Hair": 0.3,
    "Arched_Eyebrows": 0.1,
    "Rosy_Cheeks": 0.05,
    "Wearing_Earrings": 0.05,
    "Wearing_Necklace": 0.05,
    "Heavy_Makeup": 0.01,
    "Wearing_Lipstick": 0.01,
    "Black_Hair": 0.5,
    "Blond_Hair": 0.07,
    "Brown_Hair": 0.35,
}
# Traits of the person rather than of the photo: drawn once per identity.
IDENTITY_LEVEL = (
    "Male",
    "Pale_Skin",
    "Big_Nose",
    "Pointy_Nose",
    "Big_Lips",
    "Oval_Face",
    "Narrow_Eyes",
    "Chubby",
    "Double_Chin",
    "Young",
    "Attractive",
    "Arched_Eyebrows",
    "Bushy_Eyebrows",
    "Receding_Hairline",
    "Bald",
)
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
HAIR_STYLES = ("Straight_Hair", "Wavy_Hair")


def rate_given_sex(attribute: str, male: np.ndarray) -> np.ndarray:
    """P(attribute | sex) that keeps the published overall rate."""
    rate = POSITIVE_RATES[attribute]
    share = MALE_SHARE.get(attribute, P_MALE)
    return np.where(male, rate * share / P_MALE, rate * (1 - share) / (1 - P_MALE))


def _exclusive(rng, male, names) -> np.ndarray:
    """One-hot choice among mutually exclusive attributes (or none), per sex."""
    probs = np.stack([rate_given_sex(n, male) for n in names], axis=1)
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random(len(male))[:, None]
    pick = (u < cumulative).argmax(axis=1)
    pick[u[:, 0] >= cumulative[:, -1]] = -1
    return (pick[:, None] == np.arange(len(names))[None, :]).astype(np.int8)


def sample_labels(rng: np.random.Generator, identity_of_image: np.ndarray, n_identities: int) -> pd.DataFrame:
    """Clean labels (0/1) for every image: identity traits shared, per-photo traits drawn per image."""
    n = len(identity_of_image)
    # Exactly the published share of men among identities: sex is the strongest
    # correlate of other attributes, and a few hundred identities drift far otherwise.
    id_male = np.zeros(n_identities, dtype=bool)
    id_male[rng.permutation(n_identities)[: round(P_MALE * n_identities)]] = True
    labels = {"Male": id_male[identity_of_image].astype(np.int8)}
    for name in IDENTITY_LEVEL[1:]:
        labels[name] = (rng.random(n_identities) < rate_given_sex(name, id_male))[identity_of_image].astype(np.int8)
    male = labels["Male"].astype(bool)
    hair = _exclusive(rng, id_male, HAIR_COLOURS)[identity_of_image]
    style = _exclusive(rng, id_male, HAIR_STYLES)[identity_of_image]
    for k, name in enumerate(HAIR_COLOURS):
        labels[name] = hair[:, k]
    for k, name in enumerate(HAIR_STYLES):
        labels[name] = style[:, k]

    def draw(name, p=None):
        p = rate_given_sex(name, male) if p is None else p
        return (rng.random(n) < p).astype(np.int8)

    # Conditional pairs keep each marginal rate: P(B) = P(B|A) P(A) + P(B|not A) (1 - P(A)).
    def given(name, cond, p_if):
        p_b, p_a = rate_given_sex(name, male), cond.astype(bool)
        p_a_rate = rate_given_sex_marginal(cond, male)
        # Where P(B|A) P(A) alone would pass P(B), lower P(B|A) rather than lose the marginal.
        p_if = np.minimum(p_if, p_b / np.maximum(p_a_rate, 1e-9))
        p_else = np.clip((p_b - p_if * p_a_rate) / np.maximum(1 - p_a_rate, 1e-9), 0, 1)
        return draw(name, np.where(p_a, p_if, p_else))

    labels["Smiling"] = draw("Smiling")
    labels["High_Cheekbones"] = given("High_Cheekbones", labels["Smiling"], 0.85)
    labels["Mouth_Slightly_Open"] = given("Mouth_Slightly_Open", labels["Smiling"], 0.7)
    labels["Heavy_Makeup"] = draw("Heavy_Makeup")
    labels["Wearing_Lipstick"] = given("Wearing_Lipstick", labels["Heavy_Makeup"], 0.97)
    for name in ATTRIBUTES:
        if name not in labels:
            labels[name] = draw(name)
    return pd.DataFrame({name: labels[name] for name in ATTRIBUTES}).astype(np.int8)


def rate_given_sex_marginal(cond: np.ndarray, male: np.ndarray) -> np.ndarray:
    """The observed rate of a drawn 0/1 column within each sex, broadcast back to the images."""
    rate_m = cond[male].mean() if male.any() else 0.0
    rate_f = cond[~male].mean() if (~male).any() else 0.0
    return np.where(male, rate_m, rate_f)
