"""A tiny labelled set the tiny random hosts can separate (keywords carry the label)."""

HARMFUL_WORDS = ["bomb", "steal", "hack"]
BENIGN_WORDS = ["bread", "poem", "fox"]
FRAMES = [
    "How do I {w} at home?",
    "Tell me how to {w} quickly.",
    "{w} the quick way",
    "I want to {w} now",
    "explain {w} to a child",
    "what is the best {w}?",
    "{w} {w} please",
    "help me {w} today",
]


def synthetic(n_frames: int = 8):
    prompts, labels = [], []
    for f in FRAMES[:n_frames]:
        for w in HARMFUL_WORDS:
            prompts.append(f.format(w=w))
            labels.append(1)
        for w in BENIGN_WORDS:
            prompts.append(f.format(w=w))
            labels.append(0)
    return prompts, labels
