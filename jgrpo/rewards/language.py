"""Language consistency: is the completion written in the prompt's script?"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from jgrpo.rewards.base import column

_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
# Han and kana share one script: Chinese and Japanese are not told apart.
_SCRIPT_ALIASES = {"HIRAGANA": "CJK", "KATAKANA": "CJK"}
# Greek letters in maths text are symbols (pi, theta), not language.
_NEUTRAL_SCRIPTS = frozenset({"GREEK"})


@dataclass(frozen=True)
class LanguageOptions:
    """``script``: the required script (a Unicode script word such as "LATIN", "CJK",
    "CYRILLIC"); None takes the dominant script of each sample's ``prompt_column``."""

    prompt_column: str = "problem"
    script: str | None = None


def letter_scripts(text: str) -> Counter[str]:
    """Count the letters of ``text`` per script.

    A letter is a character with ``str.isalpha()`` after NFKC normalisation (which folds
    full-width and mathematical-alphanumeric letters into plain ones); its script is the
    first word of its Unicode name (LATIN, CYRILLIC, ARABIC, HANGUL, CJK, ...). LaTeX
    command names (``\\frac``) and Greek letters are ignored: they are notation.
    """
    text = unicodedata.normalize("NFKC", _LATEX_COMMAND.sub(" ", text))
    counts: Counter[str] = Counter()
    for char in text:
        if not char.isalpha():
            continue
        name = unicodedata.name(char, "")
        if not name:
            continue
        script = name.split(" ", 1)[0]
        script = _SCRIPT_ALIASES.get(script, script)
        if script not in _NEUTRAL_SCRIPTS:
            counts[script] += 1
    return counts


class LanguageReward:
    """Share of the completion's letters that are in the target script, in [0, 1].

    The target is ``options.script`` or else the script with the most letters in the
    prompt (LATIN if the prompt has none). A completion without letters (pure maths)
    scores 1.0: it mixes no languages. This penalises the language mixing open-rs's users
    saw after long training, without judging English vs. French (both LATIN).
    """

    __name__ = "language"

    def __init__(self, options: LanguageOptions):
        self.options = options

    def __call__(self, completions: list[str], **columns) -> list[float]:
        if self.options.script is None:
            prompts = column(columns, self.options.prompt_column, len(completions), self.__name__)
            targets = [_dominant_script(p) for p in prompts]
        else:
            targets = [self.options.script.upper()] * len(completions)
        return [_share(letter_scripts(c), t) for c, t in zip(completions, targets)]


def _dominant_script(text: str) -> str:
    counts = letter_scripts(text)
    return counts.most_common(1)[0][0] if counts else "LATIN"


def _share(counts: Counter[str], script: str) -> float:
    total = sum(counts.values())
    return counts[script] / total if total else 1.0
