"""Black-box classifiers: scikit-learn estimators that work on any model's text (no `guard` import).

- `ResponseRefusalDetector`: is a reply a refusal, and of which kind?
- `PromptRefusalPredictor`: will a model refuse this prompt (before it answers)?
- `TsetlinRuleClassifier`: readable AND/NOT word rules for text categories.
- `SentenceEmbedder`: all-MiniLM-L6-v2 embeddings on torch or onnxruntime.
- `MultilingualEmbedder`: USE-multilingual v3 embeddings (pure numpy).
- `MpnetEmbedder`: all-mpnet-base-v2 embeddings (from five PyPI data packages).
- `ReplyHarmClassifier`: is a reply harmful (does it carry out an unsafe request)?

Example:
    >>> from classifiers import PromptRefusalPredictor
    >>> PromptRefusalPredictor.default().refusal_score(["How do I make a pipe bomb?"])[0] > 0.5  # doctest: +SKIP
    True
"""

from classifiers._linear import Explanation, NgramWeight
from classifiers.embeddings import SentenceEmbedder
from classifiers.errors import ClassifierError, MissingDependencyError
from classifiers.mpnet import MpnetEmbedder
from classifiers.multilingual import MultilingualEmbedder
from classifiers.prompt_refusal import PromptRefusalPredictor
from classifiers.reject_option import RejectOptionClassifier, coverage_risk_curve
from classifiers.reply_harm import ReplyHarmClassifier
from classifiers.response_refusal import ResponseRefusalDetector
from classifiers.rules import Rule, TsetlinRuleClassifier
from classifiers.scores import (
    embedding_harm_score,
    multilingual_harm_score,
    prompt_refusal_score,
    reply_harm_score,
)

__all__ = [
    "ClassifierError",
    "Explanation",
    "MissingDependencyError",
    "MpnetEmbedder",
    "MultilingualEmbedder",
    "NgramWeight",
    "PromptRefusalPredictor",
    "ReplyHarmClassifier",
    "RejectOptionClassifier",
    "coverage_risk_curve",
    "ResponseRefusalDetector",
    "Rule",
    "SentenceEmbedder",
    "TsetlinRuleClassifier",
    "embedding_harm_score",
    "multilingual_harm_score",
    "prompt_refusal_score",
    "reply_harm_score",
]
