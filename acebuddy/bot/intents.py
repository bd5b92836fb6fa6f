"""Intent routing: which workflow, if any, a customer's chat message asks for.

A logistic regression over normalised words, word pairs and domain concepts, trained on first use from
the phrasings in intent_data/.
"""
from __future__ import annotations

import math
import random
import re
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

WORKFLOW_INTENTS: tuple[str, ...] = (
    "password_reset",
    "account_locked",
    "server_reboot",
    "server_slowness",
    "rdp_connection",
    "email_issue",
    "quickbooks_issue",
    "quickbooks_mfa",
    "printer_issue",
    "windows_update",
    "disk_upgrade",
    "monitor_setup",
    "user_management",
)
ALL_INTENTS: tuple[str, ...] = WORKFLOW_INTENTS + ("human_agent", "knowledge", "smalltalk")

# Beside the package's sources (this module's own file is elsewhere when it runs compiled: speedups.py).
DATA_DIR = Path(sys.modules["acebuddy.bot"].__file__ or __file__).with_name("intent_data")

# The main problem is stated early; a pasted log or a whole e-mail thread adds nothing but time.
MAX_CHARS = 800
MAX_TOKENS = 120
MAX_CORRECTIONS = 12  # unknown words per message sent to the speller
# Weight of the words in a clause the customer rules out ("not a password problem, ...").
DISMISSED_WEIGHT = 0.25
# Weight of an afterthought ("..., also can you ...") next to the main problem.
ASIDE_WEIGHT = 0.6
# Weight of a clause of pure politeness ("hi there!", "thanks so much") next to a real request.
PLEASANTRY_WEIGHT = 0.3
NO_EVIDENCE_CONFIDENCE = 0.05  # empty text, gibberish, a language we do not read
EPOCHS = 4
LEARNING_RATE = 0.4
BIAS_RATE = 0.1  # the class priors learn slowly: weak evidence should not default to a frequent class
DECAY = 0.97  # per-epoch shrinkage of all weights: the L2 penalty, applied in bulk
SEED = 20240611


@dataclass(frozen=True)
class Classification:
    intent: str  # one of ALL_INTENTS
    confidence: float  # probability of `intent`, 0..1
    alternatives: tuple[tuple[str, float], ...] = ()  # next best labels with their probabilities


def classify(text: object) -> Classification:
    """The intent of one customer message. Never raises, whatever it is given (not text: small talk)."""
    return _model().classify(text)


def warm_up() -> None:
    """Build the model now rather than on the first message (app start, benchmarks)."""
    _model()


_model_lock = threading.Lock()
_model_instance: _Model | None = None


def _model() -> _Model:
    global _model_instance
    model = _model_instance
    if model is None:
        with _model_lock:
            if _model_instance is None:
                _model_instance = _Model.build(DATA_DIR)
            model = _model_instance
    return model


_CONTRACTION_S = re.compile(r"\b(it|that|what|there|here|who|where|he|she|let)['’]s\b")  # it's -> its
_APOSTROPHE_S = re.compile(r"(\w)['’]s\b")  # boss's phone -> boss phone
_APOSTROPHE = re.compile(r"['’`]")
_WORD = re.compile(r"[a-z0-9]+")
_CLAUSE_SPLIT = re.compile(
    r"[.;!?,:()\[\]\n]+|\s-+\s|\b(?=(?:but|however|though|although|instead of|rather than)\b)"
    r"|\b(?<!think )(?<!sure )(?<!guess )(?<!believe )(?<!says )(?<!said )"
    r"(?=(?:its|it is|thats|that is|the (?:real )?(?:problem|issue) is)\b)"
)
# "not working", "not able to", "not since monday": a complaint, not a topic being ruled out.
_NOT_A_COMPLAINT = (
    r"(?!\w+ing\b|able\b|work\w*\b|sure\b|yet\b|even\b|since\b|in\b|on\b|at\b|from\b|for\b|when\b|"
    r"after\b|anymore\b|again\b|enough\b|too\b|much\b|letting\b|responding\b)"
)
# A clause that rules a topic out: "not a password problem", "its not the printer", "im not locked out",
# "i dont need a reset", "no problem right now", "rdp connects fine", "instead of a reset".
_DISMISSAL = re.compile(
    r"^(?:(?:its|it is|this is|thats|that is|the (?:real )?(?:problem|issue) is|problem is|issue is|im|i am|"
    r"were|we are)\s+)?not\s+" + _NOT_A_COMPLAINT
    + r"|^(?:it|this|that|the (?:problem|issue)|problem|issue)\s+(?:isnt|is not)\s+" + _NOT_A_COMPLAINT
    + r"|^(?:im|i am|were|we are)?\s*not\s+(?:asking|looking|talking|writing|contacting)\b"
    r"|^(?:i|we)?\s*(?:dont|do not|didnt|did not)\s+(?:need|mean|think|want an?\b|care about)"
    r"|^no\s+(?:problems?|issues?)\b"
    r"|^(?:instead of|rather than)\b"
    r"|^(?:forget|never ?mind|ignore)\s+(?:about\s+)?(?:the|that|my)\b"
    r"|^(?!.*\b(?:nothing|nobody|none|noone|no one|not|isnt|dont|cant|wont)\b).{0,40}\b(?:is|are|s|was|were|"
    r"works?|worked|seems?|looks?|connects?|prints?|opens?|loads?|running|working|been|its)\s+(?:fine|ok|okay|"
    r"normal|normally|perfectly|great|good|correct|right)\b"
)
_CORRECTION = re.compile(r"^(?:actually|sorry i meant|i meant|correction|scratch that|wait no|no wait|ignore that)\b")
_LEAD = re.compile(r"^(?:(?:actually|well|ok|so|and|but|no|sorry|oh|um|hmm|honestly|hi|hey|hello|yes|yeah)\s+)+")
_ASIDE = re.compile(r"^(?:also|and also|btw|by the way|plus|oh and|ps|p s|another thing|one more thing)\b")
# Negations collapse only after clauses are weighed: "wont connect" and "doesnt connect" are one thing.
_NEGATIONS = {
    word: "not"
    for word in "dont doesnt didnt isnt arent wasnt werent wont wouldnt hasnt havent aint never".split()
}
_NEGATIONS.update({word: "cant" for word in "cannot couldnt cnt".split()})


@dataclass(frozen=True)
class _Lexicon:
    rewrites: tuple[tuple[tuple[str, ...], re.Pattern, str], ...]  # (needles, pattern, replacement)
    tokens: dict[str, str]  # abbreviation or known misspelling -> normal form (may be several words)
    concepts: dict[str, tuple[str, ...]]  # stem -> concept names
    pleasantries: frozenset[str]  # words of greetings and thanks

    def rewrite(self, text: str) -> str:
        for needles, pattern, replacement in self.rewrites:
            for needle in needles:  # a substring test is far cheaper than a regex search that fails
                if needle in text:
                    text = pattern.sub(replacement, text)
                    break
            else:
                if not needles:
                    text = pattern.sub(replacement, text)
        return text

    @classmethod
    def load(cls, path: Path) -> _Lexicon:
        import yaml

        with open(path, encoding="utf-8") as fh:
            raw = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        rewrites = tuple(
            (tuple(rule[2]) if len(rule) > 2 else _needles(rule[0]), re.compile(rule[0]), rule[1])
            for rule in raw["rewrites"]
        )
        tokens = {}
        for section in ("abbreviations", "misspellings"):
            for normal, variants in raw[section].items():
                for variant in variants:
                    tokens[str(variant)] = str(normal)
        concepts: dict[str, tuple[str, ...]] = {}
        for concept, words in raw["concepts"].items():
            for word in words:
                stem = _stem(str(word))
                concepts[stem] = concepts.get(stem, ()) + (concept,)
        return cls(rewrites, tokens, concepts, frozenset(str(w) for w in raw["pleasantries"]))


def _needles(pattern: str) -> tuple[str, ...]:
    """Substrings of which every match of `pattern` contains one; () when no such shortcut is known.

    Covers the shapes the lexicon uses: a literal start ("\\bout ?look"), a leading group of literal
    alternatives ("\\b(?:virtual|hosted) ..."), and a leading digit ("\\b\\d+ gb").
    """
    body = pattern[2:] if pattern.startswith(r"\b") else pattern
    if body.startswith(r"\d"):
        return tuple("0123456789")
    group = re.match(r"\(\?:([a-z0-9 |]+)\)", body)
    if group:
        return tuple(group.group(1).split("|"))
    if re.search(r"(?<!\\)\|", body.replace("(?:", "(")):
        depth = 0
        for i, ch in enumerate(body):
            depth += ch == "(" and body[i - 1 : i] != "\\"
            depth -= ch == ")" and body[i - 1 : i] != "\\"
            if ch == "|" and depth == 0:
                return ()
    prefix = []
    for ch in body:
        if ch.isalnum() or ch == " ":
            prefix.append(ch)
            continue
        if ch in "?*{" and prefix:
            prefix.pop()
        break
    return ("".join(prefix),) if prefix else ()


def _stem(word: str) -> str:
    """A light suffix stripper: enough to make restart/restarted/restarting one feature."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("edly", ""), ("ed", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) + len(replacement) >= 3:
            word = word[: len(word) - len(suffix)] + replacement
            break
    else:
        if word.endswith(("ches", "shes", "xes", "zes")) and len(word) > 5:
            word = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
            word = word[:-1]
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz" and word[-1].isalpha():
        word = word[:-1]
    return word


class _Speller:
    """Maps an unknown word to the nearest known one (Damerau-Levenshtein via a deletion index)."""

    def __init__(self, counts: dict[str, int], protected: set[str]):
        self.counts = counts  # the domain words a typo may be mended to, with their frequencies
        self.known = protected | counts.keys()  # words left as they are
        self.known_stems = {_stem(word) for word in self.known}  # "looked" is "look", not a typo of "locked"
        index: dict[str, list[str]] = {}
        for word in counts:
            if len(word) >= 3 and word.isalpha():
                for variant in _deletions(word, _max_distance(word)):
                    index.setdefault(variant, []).append(word)
        # Tuples hold only strings, so the garbage collector stops tracking them: a full collection no
        # longer walks tens of thousands of lists in the middle of a customer's message.
        self.index = {variant: tuple(words) for variant, words in index.items()}
        self.correct = lru_cache(maxsize=20000)(self._correct)

    def _correct(self, word: str) -> str:
        if word in self.known or not 4 <= len(word) <= 14 or not word.isalpha():
            return word
        if _stem(word) in self.known_stems:
            return word
        # Nearer candidates first: one edit, and only then two (for longer words).
        limit = _max_distance(word)
        distances: dict[str, int] = {}
        for depth in range(1, limit + 1):
            best, best_key = word, None
            for variant in _deletions(word, depth):
                for candidate in self.index.get(variant, ()):
                    if len(word) == 4 and len(candidate) == 4 and sorted(word) != sorted(candidate):
                        continue  # a changed letter in a short word mostly makes another real word
                    if candidate not in distances:
                        distances[candidate] = _damerau(word, candidate, limit)
                    distance = distances[candidate]
                    if distance <= min(depth, _max_distance(candidate)):
                        key = (distance, -self.counts[candidate], candidate)
                        if best_key is None or key < best_key:
                            best, best_key = candidate, key
            if best_key is not None:
                return best
        if len(word) >= 7:
            for cut in range(3, len(word) - 2):  # "passwordreset", "cantconnect"
                left, right = word[:cut], word[cut:]
                if left in self.counts and right in self.counts:
                    return left + " " + right
        return word


def _max_distance(word: str) -> int:
    return 1 if len(word) < 7 else 2


def _deletions(word: str, depth: int) -> set[str]:
    result = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w)) if len(w) > 2}
        result |= frontier
    return result


def _damerau(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance, or limit + 1 as soon as it must exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


class _Normaliser:
    """Text -> weighted clauses of stemmed words, with abbreviations expanded and typos mended."""

    def __init__(self, lexicon: _Lexicon, speller: _Speller | None):
        self.lexicon = lexicon
        self.speller = speller

    def clean(self, text: str) -> str:
        """Lower-cased, apostrophes dropped, phrases and words mapped to their normal forms."""
        text = text[:MAX_CHARS].lower()
        text = _CONTRACTION_S.sub(r"\1s", text)
        text = _APOSTROPHE_S.sub(r"\1", text)
        text = _APOSTROPHE.sub("", text)
        text = self.lexicon.rewrite(text)
        corrections = [MAX_CORRECTIONS]  # bounds the work on long gibberish

        def map_word(match: re.Match) -> str:
            word = match.group()
            mapped = self.lexicon.tokens.get(word)
            speller = self.speller
            if mapped is None and speller is not None and corrections[0] > 0 and word not in speller.known:
                corrections[0] -= 1
                mapped = speller.correct(word)
                mapped = self.lexicon.tokens.get(mapped, mapped)
            return mapped or word

        text = _WORD.sub(map_word, text)
        return self.lexicon.rewrite(text)

    def clauses(self, text: str) -> list[tuple[float, list[str]]]:
        return self.split(self.clean(text))

    def split(self, cleaned: str) -> list[tuple[float, list[str]]]:
        """The message as (weight, stems) clauses; ruled-out clauses and afterthoughts weigh less."""
        parts = [p.strip() for p in _CLAUSE_SPLIT.split(cleaned)]
        parts = [p for p in parts if _WORD.search(p)]
        weights: list[float] = []
        for i, part in enumerate(parts):
            if _CORRECTION.match(part):
                weights = [DISMISSED_WEIGHT] * len(weights)
            if _DISMISSAL.match(part) or _DISMISSAL.match(_LEAD.sub("", part)):
                weights.append(DISMISSED_WEIGHT)
            elif i > 0 and _ASIDE.match(part):
                weights.append(ASIDE_WEIGHT)
            elif self.lexicon.pleasantries.issuperset(_WORD.findall(part)):
                weights.append(PLEASANTRY_WEIGHT)
            else:
                weights.append(1.0)
        if weights and max(weights) < 1.0:  # everything ruled out: nothing left to prefer
            weights = [1.0] * len(weights)
        result, budget = [], MAX_TOKENS
        for weight, part in zip(weights, parts):
            stems = [_stem(_NEGATIONS.get(w, w)) for w in _WORD.findall(part)[:budget]]
            budget -= len(stems)
            if stems:
                result.append((weight, stems))
            if budget <= 0:
                break
        return result


def _features(clauses: list[tuple[float, list[str]]], concepts: dict[str, tuple[str, ...]]) -> dict[str, float]:
    features: dict[str, float] = {}

    def add(name: str, weight: float) -> None:
        if features.get(name, 0.0) < weight:
            features[name] = weight

    for n, (weight, stems) in enumerate(clauses):
        previous = "<s>" if n == 0 else "<c>"
        for stem in stems:
            add("w:" + stem, weight)
            add("b:" + previous + "_" + stem, weight)
            for concept in concepts.get(stem, ()):
                add("c:" + concept, weight)
            previous = stem
    return features


class _Model:
    def __init__(
        self, normaliser: _Normaliser, index: dict[str, int], weights: list[tuple[float, ...]], bias: list[float]
    ):
        self.normaliser = normaliser
        self.index = index
        self.weights = weights  # per feature id, one weight per class
        self.bias = bias

    @classmethod
    def build(cls, data_dir: Path) -> _Model:
        lexicon = _Lexicon.load(data_dir / "lexicon.yaml")
        examples = _load_examples(data_dir / "examples")
        samples = [((text,), label) for text, label in examples] + _augment(examples, random.Random(SEED))
        raw = _Normaliser(lexicon, None)
        cleaned = {part: raw.clean(part) for parts, _ in samples for part in parts}
        # The speller mends unknown words to words of the training phrasings and the lexicon, and leaves
        # everyday English alone.
        counts: dict[str, int] = {}
        for text in cleaned.values():
            for token in _WORD.findall(text):
                counts[token] = counts.get(token, 0) + 1
        for words in lexicon.tokens.values():
            for token in _WORD.findall(words):
                counts.setdefault(token, 1)
        protected = set()
        with open(data_dir / "known_words.txt", encoding="utf-8") as fh:
            for line in fh:
                if not line.startswith("#"):
                    protected.update(line.split())
        normaliser = _Normaliser(lexicon, _Speller(counts, protected))
        index: dict[str, int] = {}
        rows = []
        for parts, label in samples:
            text = " ".join(cleaned[part] for part in parts)
            features = _features(normaliser.split(text), lexicon.concepts)
            for name in features:
                index.setdefault(name, len(index))
            rows.append(_encode(features, index) + (ALL_INTENTS.index(label),))
        weights, bias = _train(rows, len(index), len(ALL_INTENTS))
        return cls(normaliser, index, weights, bias)

    def probabilities(self, text: str) -> list[float] | None:
        """Probability of each of ALL_INTENTS, or None when no word of the message is known."""
        features = _features(self.normaliser.clauses(text), self.normaliser.lexicon.concepts)
        ones, weighted = _encode(features, self.index)
        if not ones and not weighted:
            return None
        return _softmax(_scores(ones, weighted, self.weights, self.bias))

    def classify(self, text: object) -> Classification:
        probs = self.probabilities(text) if isinstance(text, str) and text.strip() else None
        if probs is None:  # nothing to go on: small talk, with a confidence no threshold should accept
            return Classification("smalltalk", NO_EVIDENCE_CONFIDENCE)
        ranked = sorted(zip(ALL_INTENTS, probs), key=lambda pair: -pair[1])
        alternatives = tuple((label, round(p, 4)) for label, p in ranked[1:4] if p >= 0.01)
        return Classification(ranked[0][0], round(ranked[0][1], 4), alternatives)


def _encode(
    features: dict[str, float], index: dict[str, int]
) -> tuple[tuple[int, ...], tuple[tuple[int, float], ...]]:
    """Known features as (ids present with weight 1, (id, weight) pairs for the rest)."""
    ones, weighted = [], []
    for name, value in features.items():
        f = index.get(name)
        if f is not None:
            if value == 1.0:
                ones.append(f)
            else:
                weighted.append((f, value))
    return tuple(ones), tuple(weighted)


def _load_examples(folder: Path) -> list[tuple[str, str]]:
    examples = []
    for label in ALL_INTENTS:
        with open(folder / f"{label}.txt", encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    examples.append((line, label))
    return examples


_GREETINGS = ("hi", "hello", "hey", "hi there", "good morning", "morning", "hi team", "hello support",
              "good afternoon", "hey guys", "hiya", "hi again", "hi, hope you are well,", "hello!", "quick one -",
              "hi, quick question:", "sorry to bother you,", "urgent:", "help!", "ok so")
_SIGN_OFFS = ("thanks", "thank you", "please", "pls", "asap", "thx", "thanks in advance", "please help",
              "any ideas?", "help", "urgent", "cheers", "thanks so much!", "can you help?", "much appreciated",
              "please advise", "can someone look?", "thank you!!", "ty", "when you get a chance")


def _augment(examples: list[tuple[str, str]], rng: random.Random) -> list[tuple[tuple[str, ...], str]]:
    """Greetings and sign-offs around real requests, so that "hi" alone means small talk."""
    extra: list[tuple[tuple[str, ...], str]] = []
    for text, label in examples:
        if label == "smalltalk":
            continue
        roll = rng.random()
        if roll < 0.25:
            extra.append(((rng.choice(_GREETINGS), text), label))
        elif roll < 0.45:
            extra.append(((text, rng.choice(_SIGN_OFFS)), label))
        elif roll < 0.53:
            extra.append(((rng.choice(_GREETINGS), text + ",", rng.choice(_SIGN_OFFS)), label))
    return extra


def _scores(ones: tuple[int, ...], weighted: tuple[tuple[int, float], ...], weights, bias) -> list[float]:
    """Per-class scores. `weights` holds one row of per-class weights per feature, so summing the rows of
    the features present is a transpose and a sum in C rather than a Python loop per class."""
    rows = list(map(weights.__getitem__, ones))
    rows.extend([w * v for w in weights[f]] for f, v in weighted)
    rows.append(bias)
    return list(map(sum, zip(*rows)))


def _softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def _train(rows: list[tuple[tuple[int, ...], tuple[tuple[int, float], ...], int]], n_features: int, n_classes: int):
    """Stochastic gradient descent on the cross-entropy with weight decay (the L2 penalty).

    The decay is kept as one running scale factor instead of touching every weight after each epoch.
    """
    weights = [[0.0] * n_classes for _ in range(n_features)]
    bias = [0.0] * n_classes
    scale = 1.0
    order = list(range(len(rows)))
    rng = random.Random(SEED)
    for epoch in range(EPOCHS):
        rng.shuffle(order)
        rate = LEARNING_RATE / (1 + 0.3 * epoch)
        unscaled_bias = [b / scale for b in bias]
        for i in order:
            ones, weighted, label = rows[i]
            probs = _softmax([s * scale for s in _scores(ones, weighted, weights, unscaled_bias)])
            probs[label] -= 1.0
            for k, gradient in enumerate(probs):
                if -1e-3 < gradient < 1e-3:
                    continue
                step = rate * gradient / scale
                for f in ones:
                    weights[f][k] -= step
                for f, v in weighted:
                    weights[f][k] -= step * v
                unscaled_bias[k] -= step * BIAS_RATE
        bias = [b * scale for b in unscaled_bias]
        scale *= DECAY
    # Tuples of floats are not tracked by the garbage collector (see _Speller).
    return [tuple([w * scale for w in row]) for row in weights], bias
