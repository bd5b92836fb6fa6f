"""Reading a customer's question: stop words dropped, abbreviations expanded, joined words split
(multiuser -> multi user) and split words joined (quick books -> quickbooks), typos corrected against
the articles' own words, synonyms added at lower weight, and generic words weighed down."""
from __future__ import annotations

from dataclasses import dataclass

from . import text

EXPANSION_PART_WEIGHT = 0.7  # each word of a multi-word abbreviation (rdp -> remote desktop)
CORRECTED_WEIGHT = 0.7  # a typo-corrected word counts a little less than one typed right
_PREFIXES = ("over", "under", "mis", "re", "un", "pre", "de")


@dataclass
class Concept:
    """One meaningful word of the question, with the index terms that can stand for it."""

    word: str
    alts: list[tuple[str, float]]  # (stem, weight), best first; empty when nothing in the index matches
    weight: float = 1.0  # scaled down for generic words
    idf: float = 0.0
    corrected: bool = False

    @property
    def known(self) -> bool:
        return bool(self.alts)

    @property
    def primary(self) -> str | None:
        return self.alts[0][0] if self.alts else None


class Vocabulary:
    """What the articles say, as the question reader needs it: document frequencies and idf of the
    index terms, surface words and their stems, hyphenated compounds, and the typo corrector."""

    def __init__(self, df: dict[str, int], idf: dict[str, float], max_idf: float, surfaces: dict[str, str],
                 compounds: dict[str, list[str]]):
        self.df, self.idf, self.max_idf = df, idf, max_idf
        self.surfaces, self.compounds = surfaces, compounds
        # Typos are corrected to words of the articles, or to long stems ("quickbok" -> quickbook).
        self._spell = SpellIndex(set(surfaces) | {t for t in df if len(t) >= 6}, self._surface_df)

    def _surface_df(self, word: str) -> int:
        return self.df.get(self.surfaces.get(word, word), 0)

    def _known(self, word: str) -> str | None:
        """The index term for a surface word, if the index has it."""
        s = text.stem(word)
        if s in self.df:
            return s
        return None

    def analyse(self, query: str) -> list[Concept]:
        """The question as concepts: stop words dropped, abbreviations expanded, joined words split
        (multiuser -> multi user) and split words joined (quick books -> quickbooks), typos fixed."""
        tokens = [t for t in text.words(query) if t]
        joined: list[str] = []
        i = 0
        while i < len(tokens):
            a = tokens[i]
            if i + 1 < len(tokens):
                b = tokens[i + 1]
                if a not in text.STOPWORDS and b not in text.STOPWORDS and a + b in self.surfaces:
                    joined.append(a + b)
                    i += 2
                    continue
            joined.append(a)
            i += 1
        concepts: list[Concept] = []
        for i, token in enumerate(joined):
            if token in text.STOPWORDS:
                continue
            if i and joined[i - 1] == "how" and token in text.HOW_WORDS:  # "how long": a question form
                continue
            parts, own = None, None
            if token in text.ABBREVIATIONS:
                parts, own = text.ABBREVIATIONS[token].split(), self._known(token)
            elif token in self.compounds:
                parts, own = self.compounds[token], self._known(token)
            elif self._known(token) is None and token.isalnum():
                parts = self._split(token)
            if not parts:
                concepts.append(self._concept(token, 1.0))
                continue
            for k, part in enumerate(p for p in parts if p not in text.STOPWORDS):
                concept = self._concept(part, 1.0 if k == 0 else EXPANSION_PART_WEIGHT)
                if k == 0 and own and concept.known and own != concept.primary:  # rdp stays a way to say it
                    concept.alts = [(t, w) for t, w in concept.alts if t != own]
                    concept.alts.insert(1, (own, 1.0))
                concepts.append(concept)
        # A word given twice counts once.
        seen: dict[str | None, Concept] = {}
        out = []
        for c in concepts:
            key = c.primary if c.known else c.word
            if key in seen:
                seen[key].weight = max(seen[key].weight, c.weight)
                continue
            seen[key] = c
            out.append(c)
        return out

    def _concept(self, token: str, weight: float) -> Concept:
        generic = text.GENERIC_FORMS.get(token) or text.GENERIC.get(token)
        if generic is None:
            generic = text.GENERIC_STEMS.get(text.stem(token), 1.0)
        weight *= generic
        term = self._known(token)
        corrected = False
        if term is None and token.isalpha() and len(token) >= 5:
            fixed = self._spell.correct(token)
            if fixed:
                term = self._known(fixed) or (fixed if fixed in self.df else None)
                corrected = term is not None
        alts: dict[str, float] = {}
        if term is None:
            # Not in the articles, but a word we know the meaning of (laggy -> slow).
            base = text.stem(token)
            if token.isalpha() and len(token) > 5:
                for prefix in _PREFIXES:  # overcharged -> charged, misaligned -> aligned
                    rest = token[len(prefix):]
                    known = self._known(rest) if token.startswith(prefix) and len(rest) >= 4 else None
                    if known:
                        base = term = known
                        break
            for syn, w in text.SYNONYMS.get(base, ()):
                if syn in self.df and w > alts.get(syn, 0.0):
                    alts[syn] = w
            if term is None and not alts:
                return Concept(token, [], weight, self.max_idf)
        if term is not None:
            alts[term] = 1.0
        for syn, w in text.SYNONYMS.get(term, ()) if term else ():
            if syn in self.df and w > alts.get(syn, 0.0):
                alts[syn] = w
        ranked = sorted(alts.items(), key=lambda kv: (-kv[1], kv[0]))
        if corrected:
            weight *= CORRECTED_WEIGHT
        idf = max(self.idf[t] * w for t, w in ranked)
        return Concept(token, ranked, weight, idf, corrected)

    def _split(self, token: str) -> list[str] | None:
        """`soc2` -> soc 2, `printqueue` -> print queue: two words the articles know."""
        if token.isdigit() or len(token) < 4:
            return None
        best = None
        for i in range(2, len(token) - 0):
            a, b = token[:i], token[i:]
            if not b:
                break
            if (len(a) < 2 and not a.isdigit()) or (len(b) < 2 and not b.isdigit()):
                continue
            if a in text.STOPWORDS or b in text.STOPWORDS:
                continue
            sa, sb = self._known(a), self._known(b)
            if sa and sb:
                key = (min(self.df[sa], self.df[sb]), -abs(len(a) - len(b)))
                if best is None or key > best[0]:
                    best = (key, [a, b])
        return best[1] if best else None


class SpellIndex:
    """Typo tolerance: maps an unknown word to the closest index word (symmetric-delete lookup,
    then an exact optimal-string-alignment distance), preferring the more common word on ties."""

    def __init__(self, vocabulary: set[str], df):
        self._df = df
        deletes: dict[str, list[str]] = {}
        for word in vocabulary:
            if len(word) < 3 or not word.isalpha():
                continue
            for key in {word, *_deletes1(word)}:
                deletes.setdefault(key, []).append(word)
        # Space-joined strings rather than lists: a large index should not hold hundreds of
        # thousands of objects the garbage collector has to walk.
        self._deletes: dict[str, str] = {key: " ".join(words) for key, words in deletes.items()}

    def correct(self, word: str) -> str | None:
        max_distance = 1 if len(word) <= 7 else 2
        keys = {word, *_deletes1(word)}
        if max_distance == 2:
            for d in list(keys):
                keys.update(_deletes1(d))
        best = None
        for key in keys:
            for candidate in self._deletes.get(key, "").split():
                if abs(len(candidate) - len(word)) > max_distance:
                    continue
                dist = _osa(word, candidate, max_distance)
                if dist > max_distance:
                    continue
                rank = (dist, candidate[0] != word[0], -self._df(candidate), candidate)
                if best is None or rank < best:
                    best = rank
        return best[3] if best else None


def _deletes1(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def _osa(a: str, b: str, cap: int) -> int:
    """Optimal string alignment distance (edits and adjacent swaps), giving up above `cap`."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        if min(cur) > cap:
            return cap + 1
        prev2, prev = prev, cur
    return prev[len(b)]
