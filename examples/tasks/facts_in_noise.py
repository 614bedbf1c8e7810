import numpy as np

PEOPLE = ("mary", "john", "sandra", "daniel", "emma", "liam")
PLACES = (
    "kitchen", "garden", "office", "bathroom", "hallway", "bedroom",
    "cellar", "attic",
)  # fmt: skip
NOISE = (
    "a", "an", "old", "sky", "was", "grey", "and", "quiet", "rain", "fell",
    "on", "roofs", "of", "town", "while", "birds", "sang", "in", "trees",
    "near", "river", "that", "ran", "past", "fields", "with", "tall",
    "grass", "under", "clouds", "morning", "light", "came", "slowly",
    "over", "hills", "far", "away", "from", "sea",
)  # fmt: skip
WORDS = ("<pad>", ".", "?", "where", "is", "went", "to", "the")
VOCABULARY = WORDS + PEOPLE + PLACES + NOISE
_ID = {word: index for index, word in enumerate(VOCABULARY)}
FACT_LENGTH = 6  # "mary went to the kitchen ."
QUESTION_LENGTH = 4  # "where is mary ?"


def facts_in_noise(
    num_samples,
    num_segments,
    segment_length=24,
    num_facts=3,
    num_people=2,
    num_places=6,
    seed=0,
):
    """Facts hidden in noise, a question at the end (bAbI / BABILong qa1).

    Each row is `num_segments * segment_length` words: noise words, with
    `num_facts` sentences such as "mary went to the kitchen ." put at random
    places among them, and at the very end "where is mary ?". The answer is
    where the person asked about went last, and is predicted at the last
    position (the "?"). The person asked about is one the facts mention.
    Noise words are never fact words, so a model can learn what to keep;
    the facts can be anywhere, so a long input puts many segments of noise
    between a fact and the question, and memory must hold the fact across
    all of them. Word-level ids index `VOCABULARY` in this module
    (`tasks.facts_in_noise.VOCABULARY`); 0 is padding.

    Args:
        num_samples: int. How many rows.
        num_segments: int. Row length in segments.
        segment_length: int. Words per segment.
        num_facts: int. Fact sentences per row. They and the question must
            fit in the row: `6 * num_facts + 4` words at most.
        num_people: int. People the facts may name (up to 6).
        num_places: int. Places they may go (up to 8); chance is about
            `1 / num_places`.
        seed: int. Seed of the random generator. Defaults to `0`.

    Returns:
        `(inputs, labels, sample_weight)`: `inputs` a dict with `"token_ids"`
        and `"padding_mask"` (int32, `(num_samples, num_segments *
        segment_length)`), `labels` (int32, same shape) holding the answer's
        id at the last position, where alone `sample_weight` is 1.

    Example:
    ```python
    from tasks.facts_in_noise import VOCABULARY, facts_in_noise

    inputs, labels, weight = facts_in_noise(
        2, num_segments=4
    )
    inputs["token_ids"].shape  # (2, 96)
    question = inputs["token_ids"][0, -4:-2]
    tuple(VOCABULARY[i] for i in question)  # ("where", "is")
    ```

    Reference:
     - [Kuratov et al., 2024](https://arxiv.org/abs/2406.10149)
    """
    length = num_segments * segment_length
    if FACT_LENGTH * num_facts + QUESTION_LENGTH > length:
        raise ValueError(
            f"{num_facts} facts and the question need "
            f"{FACT_LENGTH * num_facts + QUESTION_LENGTH} words, more than "
            f"the row's num_segments * segment_length = {length}. "
            f"Received: num_segments={num_segments}, "
            f"segment_length={segment_length}, num_facts={num_facts}"
        )
    if not 1 <= num_people <= len(PEOPLE):
        raise ValueError(
            f"`num_people` must be from 1 to {len(PEOPLE)}. "
            f"Received: num_people={num_people}"
        )
    if not 1 <= num_places <= len(PLACES):
        raise ValueError(
            f"`num_places` must be from 1 to {len(PLACES)}. "
            f"Received: num_places={num_places}"
        )
    rng = np.random.default_rng(seed)
    token_ids = np.zeros((num_samples, length), "int32")
    labels = np.zeros_like(token_ids)
    for row in range(num_samples):
        token_ids[row], labels[row, -1] = _row(
            rng, length, num_facts, num_people, num_places
        )
    weight = np.zeros(token_ids.shape, "float32")
    weight[:, -1] = 1.0
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    return inputs, labels, weight


def _row(rng, length, num_facts, num_people, num_places):
    """One row's word ids and the id of its answer."""
    people = rng.integers(0, num_people, num_facts)
    places = rng.integers(0, num_places, num_facts)
    facts = [
        [_ID[PEOPLE[p]], _ID["went"], _ID["to"], _ID["the"]]
        + [_ID[PLACES[q]], _ID["."]]
        for p, q in zip(people, places)
    ]
    noise_length = length - QUESTION_LENGTH - FACT_LENGTH * num_facts
    noise = rng.integers(
        len(VOCABULARY) - len(NOISE), len(VOCABULARY), noise_length
    )
    cuts = np.sort(rng.integers(0, noise_length + 1, num_facts))
    words, previous = [], 0
    for cut, fact in zip(cuts, facts):
        words += list(noise[previous:cut]) + fact
        previous = cut
    words += list(noise[previous:])
    asked = rng.choice(people)
    answer = places[np.flatnonzero(people == asked)[-1]]
    words += [_ID["where"], _ID["is"], _ID[PEOPLE[asked]], _ID["?"]]
    return words, _ID[PLACES[answer]]
