"""Words for the knowledge base: tokenising, a light English stemmer, stop and generic words, and the
hand-made domain vocabulary (abbreviations, synonyms, spellings) that turns chat into index terms.

Everything here is pure and deterministic; documents and queries go through the same functions.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)*(?:'[a-z]+)?")
_HYPHENATED = re.compile(r"\b[a-z]+(?:-[a-z]+)+\b")
# Written several ways by customers and writers alike ("log in", "sign-in", "login"); folded into one
# token after tokenising: (first words, second words) -> the folded token.
_PAIRS = {}
for _firsts, _seconds, _folded in (
    ("sign signed signs signing log logged logs logging", "in ins on ons", "signin"),
    ("sign signed signs signing log logged logs logging", "out off", "signout"),
    ("set sets setting", "up ups", "setup"),
    ("back backed backing", "up ups", "backup"),
    ("e", "mail mails", "email"),
    ("wi", "fi", "wifi"),
    ("save saved saves saving wrote written", "over", "overwrite"),
):
    for _first in _firsts.split():
        for _second in _seconds.split():
            _PAIRS[(_first, _second)] = _folded
_PAIR_FIRSTS = frozenset(first for first, _ in _PAIRS)
_SINGLES = {"login": "signin", "logins": "signin", "logon": "signin", "signins": "signin",
            "logout": "signout", "logoff": "signout", "setups": "setup", "emails": "email"}
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": " "})

STOPWORDS = frozenset("""
a about above after again against all am an and any are aren arent as at be because been before being
below between both but by can cant could couldn did didn didnt do does doesn doesnt doing don dont down
during each either else ever every few for from further had hadn has hasn hasnt have haven havent having he
her here hers herself him himself his how i id if im in into is isn isnt it its itself ive just let lets
me more most much must mustn my myself no nor not now of off on once only or other ought our ours
ourselves out over own same shan she should shouldn so some such than that thats the their theirs them
themselves then there these they this those through thru to too under until up upon us very was wasn
we were weren what whats when where which while who whom whose why will with won wont would wouldn you
youd youll youre youve your yours yourself yourselves hi hello hey please pls plz thanks thank thx ok okay
yes yeah ill also hmm cannot another guys anyone someone somebody
""".split())

# "how long", "how many": the second word says what kind of answer is wanted, not what it is about.
HOW_WORDS = frozenset("long many much often far big soon quickly fast".split())
_NUMBER = r"(?:\d+(?:[.,]\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|thirty|ninety)"
_DURATION = re.compile(
    rf"\b{_NUMBER}[ -](?:business |working )?(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?)\b", re.I
)
_AMOUNT = re.compile(r"\$\s?\d|\b\d+(?:\.\d+)?\s?(?:gb|tb|mb|%)\b|\bper (?:user|month|year)\b", re.I)
_TIME = re.compile(
    r"\b\d{1,2}(?::\d{2})?\s?(?:a\.m\.|p\.m\.|am|pm)\b|\b(?:mon|tues|wednes|thurs|fri|satur|sun)days?\b|"
    r"\b(?:weekends?|weekdays?|nightly|overnight|monthly|weekly|daily)\b", re.I)
# What kind of answer a question asks for, and how to spot one in a passage.
_FREQUENCY = re.compile(_DURATION.pattern + r"|\bevery\b|\b(?:daily|weekly|monthly|yearly|annually|nightly)\b",
                        re.I)
ANSWER_TYPES = {("how", "long"): _DURATION, ("how", "often"): _FREQUENCY, ("how", "much"): _AMOUNT,
                ("how", "big"): _AMOUNT, ("how", "many"): re.compile(r"\b\d+\b"), ("when",): _TIME,
                ("what", "time"): _TIME}


def answer_type(tokens: list[str]):
    """The pattern an answer to this question contains (durations for "how long"...), or None."""
    for i, token in enumerate(tokens):
        if token in ("how", "what") and i + 1 < len(tokens):
            pattern = ANSWER_TYPES.get((token, tokens[i + 1]))
            if pattern:
                return pattern
        elif token == "when":
            return ANSWER_TYPES[("when",)]
    return None


# Words that carry little meaning in a support chat even when rare in the articles; their query weight
# is scaled down rather than dropped, so a query made only of them still finds something.
GENERIC = {
    "help": 0.2, "need": 0.25, "want": 0.25, "get": 0.3, "got": 0.3, "getting": 0.3, "know": 0.2,
    "tell": 0.2, "way": 0.2, "thing": 0.2, "things": 0.2, "problem": 0.3, "problems": 0.3, "issue": 0.3,
    "issues": 0.3, "trouble": 0.3, "question": 0.2, "questions": 0.2, "like": 0.2, "say": 0.3, "says": 0.3,
    "said": 0.3, "saying": 0.3, "go": 0.3, "going": 0.3, "still": 0.3, "really": 0.2, "today": 0.4,
    "anymore": 0.3, "possible": 0.3, "able": 0.3, "something": 0.2, "anything": 0.2, "make": 0.5,
    "use": 0.5, "using": 0.5, "work": 0.5, "works": 0.5, "working": 0.5, "try": 0.4, "trying": 0.4,
    "do": 0.3, "see": 0.6, "hosted": 0.5, "server": 0.6, "account": 0.7, "support": 0.5, "team": 0.4,
    "company": 0.7, "firm": 0.5, "new": 0.7, "now": 0.3, "just": 0.3, "again": 0.3, "long": 0.3,
    "often": 0.4, "many": 0.3, "far": 0.3, "happen": 0.4, "happens": 0.4, "happened": 0.4,
}

# Abbreviations and chat shorthand, replaced by what they stand for (each word of the expansion is a
# word of the question). When the articles use the abbreviation too, it stays an alternative.
ABBREVIATIONS = {
    "qb": "quickbooks", "qbs": "quickbooks", "qbd": "quickbooks desktop", "qbdt": "quickbooks desktop",
    "quickbook": "quickbooks", "quikbooks": "quickbooks",
    "pw": "password", "pwd": "password", "passwd": "password", "pword": "password", "creds": "credentials",
    "rdp": "remote desktop", "rds": "remote desktop", "rdc": "remote desktop", "mstsc": "remote desktop",
    "2fa": "mfa", "tfa": "mfa", "2sv": "mfa", "otp": "mfa code", "totp": "mfa code",
    "o365": "outlook", "m365": "microsoft 365", "office365": "microsoft 365",
    "msft": "microsoft", "acct": "account", "accts": "accounts", "admin": "administrator",
    "admins": "administrators", "sysadmin": "administrator",
    "pc": "computer", "pcs": "computers", "laptop": "computer", "laptops": "computers",
    "macbook": "mac", "macbooks": "mac", "imac": "mac", "macos": "mac", "osx": "mac",
    "iphone": "phone", "cellphone": "phone", "smartphone": "phone", "mobile": "phone",
    "android": "phone", "samsung": "android", "galaxy": "android",
    "vm": "server", "vps": "server", "db": "database", "av": "antivirus", "fw": "firewall",
    "cert": "certificate", "certs": "certificate", "gigs": "gb", "hdd": "disk", "ssd": "disk",
    "cpu": "processor", "cpus": "processors", "vcpu": "processor", "ram": "memory",
    "isp": "internet provider", "ndr": "bounce", "ach": "bank", "asap": "urgent",
    "doc": "document", "docs": "documents", "mins": "minutes", "hrs": "hours", "yr": "year", "yrs": "years",
    "ssl": "certificate", "sms": "text", "txt": "text", "bw": "black white", "vs": "compare", "versus": "compare",
}

# Customers abroad name the country they are in; the articles talk about travel and countries.
# (The United States and Canada are home regions, so they are not in the list.)
FOREIGN_COUNTRIES = frozenset("""
mexico uk england scotland ireland france germany spain portugal italy netherlands belgium switzerland
austria sweden norway denmark finland poland greece turkey israel india china japan korea philippines
vietnam thailand singapore australia zealand brazil argentina colombia peru chile costa rica jamaica
bahamas dominican caribbean europe asia africa egypt morocco dubai uae emirates
""".split())
for _country in FOREIGN_COUNTRIES:
    ABBREVIATIONS.setdefault(_country, "country")

# Words that mean roughly the same thing here. Each entry adds the other members to the query at a
# lower weight (the original word keeps full weight). Kept general: none is keyed to one question.
SYNONYM_GROUPS = (
    (0.8, "reboot restart"),
    (0.6, "slow lag laggy sluggish performance"),
    (0.5, "freeze frozen hang unresponsive stuck"),
    (0.7, "disconnect drop dropped kicked"),
    (0.6, "timeout idle"),
    (0.7, "lock lockout locked unlock"),
    (0.6, "forgot forgotten reset"),
    (0.7, "signin sign"),
    (0.5, "signin login credential"),
    (0.6, "password credential"),
    (0.7, "mfa 2fa authenticator authentication"),
    (0.5, "mfa verification"),
    (0.6, "email mail mailbox"),
    (0.5, "outlook exchange"),
    (0.6, "spam junk quarantine"),
    (0.6, "bounce undeliverable ndr"),
    (0.7, "phishing scam suspicious fraud"),
    (0.6, "monitor screen display"),
    (0.6, "blurry fuzzy"),
    (0.5, "tiny small"),
    (0.6, "storage space disk capacity store"),
    (0.6, "excel spreadsheet workbook"),
    (0.5, "setup enrol register"),
    (0.5, "home local"),
    (0.6, "difference compare comparison"),
    (0.6, "memory ram"),
    (0.6, "cpu processor vcpu core"),
    (0.7, "restore recover undelete"),
    (0.5, "delete deleted remove lost"),
    (0.6, "backup snapshot"),
    (0.6, "keep retain retention"),
    (0.6, "price cost pricing fee charge"),
    (0.6, "bill billing invoice"),
    (0.6, "cancel cancellation terminate termination"),
    (0.6, "card payment"),
    (0.7, "install installation"),
    (0.6, "software program application"),
    (0.5, "update upgrade patch"),
    (0.6, "patch patching update"),
    (0.6, "permission access rights"),
    (0.5, "folder drive directory"),
    (0.6, "copy transfer move upload"),
    (0.5, "file document"),
    (0.6, "print printer printing"),
    (0.5, "check cheque"),
    (0.7, "hire hired onboard onboarding"),
    (0.6, "leave left quit fired departed offboard offboarding"),
    (0.6, "employee staff user colleague"),
    (0.5, "phone mobile smartphone"),
    (0.6, "mac macos"),
    (0.5, "computer pc laptop"),
    (0.5, "connect connection"),
    (0.6, "certificate cert identity"),
    (0.6, "error code"),
    (0.6, "travel abroad overseas country trip vacation holiday"),
    (0.6, "vpn proxy"),
    (0.5, "location located datacenter"),
    (0.6, "encrypt encryption"),
    (0.6, "setup configure"),
    (0.5, "calendar meeting"),
    (0.5, "plan subscription"),
)

# British and American spellings (the articles are British, the customers often are not).
SPELLINGS = {
    "center": "centre", "centers": "centres", "datacenter": "datacentre", "datacenters": "datacentre",
    "license": "licence", "licenses": "licences", "licensed": "licenced", "licensing": "licencing",
    "enroll": "enrol", "enrollment": "enrolment", "canceled": "cancelled", "canceling": "cancelling",
    "traveled": "travelled", "traveling": "travelling", "labeled": "labelled", "labeling": "labelling",
    "color": "colour", "colors": "colours", "gray": "grey", "grayed": "greyed", "behavior": "behaviour",
    "favorite": "favourite", "cheque": "check", "cheques": "checks", "dialogue": "dialog",
    "optimise": "optimize", "optimised": "optimized",
}

_VOWELS = frozenset("aeiouy")
_SUFFIX_RULES = (  # (suffix, replacement, shortest remainder): first match wins; applied twice at most
    ("ation", "", 4), ("ition", "", 3), ("ator", "", 4), ("ment", "", 4),
    ("ness", "", 4), ("able", "", 4), ("ible", "", 4), ("ance", "", 4), ("ence", "", 4), ("ful", "", 4),
    ("sion", "s", 3), ("tion", "t", 3), ("al", "", 5), ("er", "", 5),
)
# Words the rules would damage (Business plan is not "busy", an edition is not an edit).
_STEM_EXCEPTIONS = {
    "business": "business", "edition": "edition", "editions": "edition", "series": "series",
    "windows": "windows", "news": "news", "address": "address", "always": "always", "canada": "canada",
    "data": "data", "media": "media", "portable": "portabl", "status": "status", "alias": "alias", "aliases": "alias",
}
# Irregular forms, so "kept" finds "keep" and "sent" finds "send".
_IRREGULAR = {
    "kept": "keep", "sent": "send", "paid": "pay", "bought": "buy", "left": "leave", "ran": "run",
    "got": "get", "gotten": "get", "made": "make", "took": "take", "taken": "take", "gave": "give",
    "given": "give", "saw": "see", "seen": "see", "told": "tell", "found": "find", "held": "hold",
    "chose": "choose", "chosen": "choose", "broke": "break", "broken": "break", "wrote": "write",
    "written": "write", "forgot": "forget", "forgotten": "forget", "began": "begin", "begun": "begin",
    "came": "come", "knew": "know", "known": "know", "shown": "show", "went": "go", "gone": "go",
    "lost": "lose", "stole": "steal", "stolen": "steal", "froze": "freeze", "frozen": "freeze",
    "hung": "hang", "spent": "spend", "built": "build", "rebuilt": "rebuild", "caught": "catch",
    "thought": "think", "brought": "bring", "meant": "mean", "felt": "feel", "kicked": "kick",
    "overwritten": "overwrite", "overwrote": "overwrite",
}
# Stems that differ only by spelling or doubling; mapped to one form.
_STEM_ALIASES = {
    "licenc": "licens", "centr": "center", "datacentr": "datacenter", "enroll": "enrol", "cancell": "cancel",
    "travell": "travel", "labell": "label", "colour": "color", "instal": "install",
}


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light suffix-stripping stemmer (in the spirit of Porter, much smaller): plurals, -ed/-ing,
    common derivational endings, final -y/-e. Conflates what customers and writers vary
    (print/printing/printer, restore/restored, security/secure) and leaves codes alone."""
    w = _IRREGULAR.get(word, word)
    if len(w) <= 3 or not w.isalpha():
        return w
    if w in _STEM_EXCEPTIONS:
        return _STEM_EXCEPTIONS[w]
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith(("shes", "ches", "xes", "zes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if w.endswith("ied") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("ed") and not w.endswith("eed") and len(w) > 4 and _VOWELS.intersection(w[:-2]):
        w = _undouble(w[:-2])
    elif w.endswith("ing") and len(w) > 5 and _VOWELS.intersection(w[:-3]):
        w = _undouble(w[:-3])
    if w.endswith("ity") and len(w) >= 7:
        w = w[:-3]
    elif w.endswith("ically") and len(w) >= 9:
        w = w[:-4]
    elif w.endswith("ally") and len(w) >= 8:
        w = w[:-2]
    elif w.endswith("ly") and len(w) >= 6:
        w = w[:-2]
    if w.endswith("y") and len(w) > 4 and w[-2] not in _VOWELS:
        w = w[:-1]
    for _ in range(2):
        for suffix, replacement, keep in _SUFFIX_RULES:
            if w.endswith(suffix) and len(w) - len(suffix) >= keep:
                w = w[: len(w) - len(suffix)] + replacement
                if suffix == "er":
                    w = _undouble(w)
                break
        else:
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    if w.endswith("iz") and len(w) >= 5:
        w = w[:-2] + "is"
    if w.endswith(("ific", "ificat")):
        w = w[: w.rindex("ific")] + "if"
    return _STEM_ALIASES.get(w, w)


def _undouble(w: str) -> str:
    if len(w) >= 4 and w[-1] == w[-2] and w[-1] not in _VOWELS and w[-1] not in "lsz":
        return w[:-1]
    return w


def normalise(text: str) -> str:
    """Lower case, plain ASCII quotes and letters."""
    text = text.lower().translate(_QUOTES)
    if not text.isascii():  # accents dropped (café -> cafe), other symbols removed
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return text


_REWRITTEN = frozenset(_SINGLES) | frozenset(SPELLINGS)


def words(text: str) -> list[str]:
    """Surface tokens: lower case, possessives dropped, British spelling, "log in" -> signin."""
    text = normalise(text)
    tokens = _TOKEN.findall(text)
    if "'" not in text and _PAIR_FIRSTS.isdisjoint(tokens) and _REWRITTEN.isdisjoint(tokens):
        return tokens
    out: list[str] = []
    skip = False
    for i, token in enumerate(tokens):
        if skip:
            skip = False
            continue
        if token in _PAIR_FIRSTS and i + 1 < len(tokens):
            folded = _PAIRS.get((token, tokens[i + 1]))
            if folded:
                out.append(folded)
                skip = True
                continue
        if "'" in token:
            if token.endswith("'s"):
                token = token[:-2]
            elif token.endswith("n't"):
                continue
            else:
                token = token.replace("'", "")
        out.append(_SINGLES.get(token) or SPELLINGS.get(token, token))
    return out


def hyphenated_compounds(text: str) -> dict[str, list[str]]:
    """`multi-user` in the text lets a query say `multiuser`: joined form -> its parts."""
    found: dict[str, list[str]] = {}
    if "-" not in text:
        return found
    for match in _HYPHENATED.findall(text.lower()):
        parts = match.split("-")
        found["".join(parts)] = parts
    return found


def content_terms(text: str) -> list[str]:
    """The stemmed index terms of a text, stop words removed, in order."""
    return [stem(w) for w in words(text) if w not in STOPWORDS]


def _build_synonyms() -> dict[str, tuple[tuple[str, float], ...]]:
    table: dict[str, dict[str, float]] = {}
    for weight, group in SYNONYM_GROUPS:
        members = [stem(SPELLINGS.get(w, w)) for w in group.split()]
        for m in members:
            for other in members:
                if other != m and weight > table.setdefault(m, {}).get(other, 0.0):
                    table[m][other] = weight
    return {k: tuple(sorted(v.items())) for k, v in table.items()}


SYNONYMS = _build_synonyms()
GENERIC_STEMS = {stem(w): v for w, v in GENERIC.items()}
# Exact forms only: "it keeps asking" is generic, "how long do you keep backups" is not.
GENERIC_FORMS = {"keeps": 0.3, "kept": 0.6}
