"""Reward functions and the registry, on hand-written completions."""

import math
import textwrap

import numpy as np
import pytest

from jgrpo.grading import Grader, GradingOptions
from jgrpo.rewards import (
    REWARD_NAMES,
    TOKEN_LENGTHS_COLUMN,
    AccuracyOptions,
    CosineOptions,
    LanguageOptions,
    RepetitionOptions,
    RewardOptions,
    build_reward_fn,
    format_open_r1_reward,
    format_reward,
    tag_count_reward,
)

ANSWER_GOLD = RewardOptions(accuracy=AccuracyOptions(gold_column="answer", normalize_gold=True))


@pytest.fixture(scope="module")
def grader():
    with Grader(GradingOptions(num_workers=2)) as g:
        yield g


def rewards(names, completions, grader=None, options=RewardOptions(), weights=None, **columns):
    return build_reward_fn(names, weights, options, grader)(completions, **columns)


# --- format, tag_count -----------------------------------------------------------------


def test_format_counts_exactly_one_closing_think():
    completions = [
        "Let me see.\n</think>\nThe answer is $\\boxed{2}$.",
        "Let me see.\n</think>\nHmm.\n</think>\nThe answer is 2.",  # two closings
        "Let me see.</think>The answer is 2.",  # no newlines around the tag
        "Still thinking when the length limit hit",
        "",
    ]
    assert format_reward(completions) == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_format_open_r1_needs_the_whole_tag_structure():
    completions = [
        "<think>\nreasoning\n</think>\n<answer>\n5\n</answer>",
        "reasoning\n</think>\n<answer>\n5\n</answer>",  # R1 template: <think> is in the prompt
        "<think>\nreasoning\n</think>\nThe answer is 5.",
        # As upstream: with re.MULTILINE, "$" also matches before a newline, so a trailing
        # line after </answer> still passes.
        "<think>\nreasoning\n</think>\n<answer>\n5\n</answer>\ntrailing",
    ]
    assert format_open_r1_reward(completions) == [1.0, 0.0, 0.0, 1.0]


def test_tag_count():
    completions = ["<think>\nx\n</think>\ny", "x\n</think>\ny", "<think>\n<think>\nx", "x"]
    assert tag_count_reward(completions) == [1.0, 0.5, 0.0, 0.0]


# --- accuracy --------------------------------------------------------------------------


def test_accuracy_on_hand_written_completions(grader):
    cases = [
        ("I believe it is 5.\n</think>\nThe answer is 5.", "$5$", 0.0),  # no boxed answer
        ("\n</think>\nSo $\\boxed{0.5}$.", "$\\frac{1}{2}$", 1.0),
        ("\n</think>\nSo $\\boxed{\\frac{1}{2}}$.", "$0.5$", 1.0),
        ("Maybe $\\boxed{3}$.\n\nNo: $\\boxed{5}$.", "$5$", 1.0),  # several boxed: the last
        ("Maybe $\\boxed{5}$.\n\nNo: $\\boxed{3}$.", "$5$", 0.0),
        ("\n</think>\n$\\boxed{7}$", "no maths in this gold", 1.0),  # unparseable gold: open-rs
        ("\n</think>\n$\\boxed{8}$", "The solution gives $\\boxed{7}$.", 0.0),
    ]
    completions, solutions, expected = map(list, zip(*cases))
    out = rewards(["accuracy"], completions, grader, solution=solutions)
    assert out.per_function["accuracy"].tolist() == expected
    assert out.metrics["rewards/accuracy/gold_unparseable"] == 1
    assert out.metrics["rewards/accuracy/mean"] == pytest.approx(np.mean(expected))


def test_accuracy_unparseable_gold_reward_is_an_option(grader):
    options = RewardOptions(accuracy=AccuracyOptions(unparseable_gold_reward=0.0))
    out = rewards(["accuracy"], ["$\\boxed{7}$"], grader, options, solution=["seven"])
    assert out.per_function["accuracy"].tolist() == [0.0]


def test_bare_answer_gold_needs_normalize_gold(grader):
    wrong = ["\n</think>\nThe answer is $\\boxed{4}$."]
    unwrapped = RewardOptions(AccuracyOptions(gold_column="answer"))
    bare = rewards(["accuracy"], wrong, grader, unwrapped, answer=["5"])
    assert bare.per_function["accuracy"].tolist() == [1.0]  # open-rs's trap: unparseable -> 1
    fixed = rewards(["accuracy"], wrong, grader, ANSWER_GOLD, answer=["5"])
    assert fixed.per_function["accuracy"].tolist() == [0.0]
    assert fixed.metrics["rewards/accuracy/gold_unparseable"] == 0


def test_accuracy_names_a_missing_gold_column(grader):
    with pytest.raises(ValueError, match=r"reward 'accuracy' needs column 'solution'.*'answer'"):
        rewards(["accuracy"], ["$\\boxed{1}$"], grader, answer=["1"])


def test_grader_timeout_scores_zero_and_is_counted():
    # Grading the middle completion takes math-verify about 5 s (see test_grading.py).
    completions = ["$\\boxed{5}$", "So $\\boxed{10^{10^{8}}}$.", "$\\boxed{5}$"]
    options = RewardOptions(
        accuracy=ANSWER_GOLD.accuracy, grading=GradingOptions(num_workers=2, deadline_s=2.0)
    )
    with build_reward_fn(["accuracy"], options=options) as fn:
        out = fn(completions, answer=["5"] * 3)
    assert out.per_function["accuracy"].tolist() == [1.0, 0.0, 1.0]
    assert out.metrics["rewards/grader_timeouts"] == 1
    assert out.metrics["rewards/accuracy/grader_timeouts"] == 1


# --- cosine ----------------------------------------------------------------------------


def _completion_of_length(n: int, boxed: str) -> str:
    suffix = f"\n</think>\nThe answer is $\\boxed{{{boxed}}}$."
    padding = ("we keep checking the cases " * (n // 10 + 1))[: n - len(suffix)]
    completion = padding + suffix
    assert len(completion) == n
    return completion


def _open_rs_cosine(length: int, correct: bool, max_len: int = 3584) -> float:
    """open-rs's formula with its constants, in characters, unclipped."""
    cosine = math.cos(length / max_len * math.pi)
    if correct:
        return 0.5 + 0.5 * (1.0 - 0.5) * (1.0 + cosine)
    return -0.5 + 0.5 * (0.0 - -0.5) * (1.0 + cosine)


LENGTHS = [200, 1792, 3584, 5376, 7168]


def test_cosine_matches_open_rs_formula_and_oscillates_past_max_len(grader):
    completions = [_completion_of_length(n, "5") for n in LENGTHS]
    completions += [_completion_of_length(n, "6") for n in LENGTHS]
    out = rewards(["cosine"], completions, grader, ANSWER_GOLD, answer=["5"] * len(completions))
    expected = [_open_rs_cosine(n, True) for n in LENGTHS]
    expected += [_open_rs_cosine(n, False) for n in LENGTHS]
    np.testing.assert_allclose(out.per_function["cosine"], expected, atol=1e-12)
    correct, wrong = out.per_function["cosine"][:5], out.per_function["cosine"][5:]
    # The known defect: twice max_len scores like length 0 (wrong: back up to 0.0).
    assert correct[-1] == pytest.approx(1.0) and wrong[-1] == pytest.approx(0.0)
    assert wrong[2] == pytest.approx(-0.5)


def test_corrected_cosine_uses_tokens_and_clips(grader):
    options = RewardOptions(
        accuracy=ANSWER_GOLD.accuracy, cosine=CosineOptions(max_len=1000, corrected=True)
    )
    completions = [_completion_of_length(100, "5")] * 4 + [_completion_of_length(100, "6")]
    tokens = [0, 500, 1000, 2000, 2000]
    out = rewards(
        ["cosine"], completions, grader, options, answer=["5"] * 5, **{TOKEN_LENGTHS_COLUMN: tokens}
    )
    np.testing.assert_allclose(out.per_function["cosine"], [1.0, 0.75, 0.5, 0.5, -0.5], atol=1e-12)
    with pytest.raises(ValueError, match="completion_token_lengths"):
        rewards(["cosine"], completions, grader, options, answer=["5"] * 5)


# --- repetition ------------------------------------------------------------------------


def test_repetition_penalty():
    fn = build_reward_fn(["repetition"]).functions["repetition"]
    # "a b c a b c": 3-grams abc bca cab abc -> 1 repeat in 4.
    assert fn(["a b c a b c", "A b C a B c", "a b", "", "a b c d"]) == [-0.25, -0.25, 0.0, 0.0, 0.0]
    options = RewardOptions(repetition=RepetitionOptions(ngram_size=2, max_penalty=-0.5))
    fn = build_reward_fn(["repetition"], options=options).functions["repetition"]
    assert fn(["x x x x"]) == [pytest.approx(-0.5 * (1 - 1 / 3))]
    with pytest.raises(ValueError, match="max_penalty must be <= 0"):
        options = RewardOptions(repetition=RepetitionOptions(max_penalty=0.5))
        build_reward_fn(["repetition"], options=options)


# --- language --------------------------------------------------------------------------


def test_language_share_of_prompt_script():
    english, chinese = "What is $x$ if $2x=6$?", "求 $x$ 的值，如果 $2x=6$。"
    completions = [
        "We divide both sides by two, so x is three.",  # 34 Latin letters
        "We divide 两边 by two.",  # 13 Latin, 2 CJK
        "\\frac{\\alpha}{2} = \\theta = 3",  # only notation: no letters
        "Thus θ = π",  # Greek is notation
        "两边除以二，所以 x 等于三。",  # 10 CJK, 1 Latin
        "ＡＢＣ",  # full-width Latin
    ]
    fn = build_reward_fn(["language"]).functions["language"]
    assert fn(completions, problem=[english] * 6) == pytest.approx(
        [1.0, 13 / 15, 1.0, 1.0, 1 / 11, 1.0]
    )
    assert fn(completions[4:5], problem=[chinese]) == pytest.approx([10 / 11])
    assert fn(completions[:1], problem=[chinese]) == [0.0]
    japanese = "次の値を求めよ。"  # kanji and kana: one script
    assert fn(["答えはさんです。"], problem=[japanese]) == [1.0]


def test_language_fixed_script():
    options = RewardOptions(language=LanguageOptions(script="cyrillic"))
    fn = build_reward_fn(["language"], options=options).functions["language"]
    assert fn(["Ответ: три", "three"]) == [1.0, 0.0]


# --- registry --------------------------------------------------------------------------


def test_weighted_total_and_metrics(grader):
    completions = [
        "ok\n</think>\n$\\boxed{5}$",  # format 1, accuracy 1
        "ok\n</think>\n$\\boxed{4}$",  # format 1, accuracy 0
        "no closing tag $\\boxed{5}$",  # format 0, accuracy 1
    ]
    out = rewards(
        ["format", "accuracy"], completions, grader, ANSWER_GOLD, [1.0, 2.0], answer=["5"] * 3
    )
    np.testing.assert_allclose(out.total, [3.0, 1.0, 2.0])
    assert out.metrics["rewards/format/mean"] == pytest.approx(2 / 3)
    assert out.metrics["rewards/accuracy/std"] == pytest.approx(np.std([1, 0, 1]))
    assert out.metrics["rewards/total/mean"] == pytest.approx(2.0)
    assert out.metrics["rewards/grader_timeouts"] == 0


def test_unknown_reward_name_lists_known_ones():
    with pytest.raises(ValueError) as info:
        build_reward_fn(["acuracy"])
    message = str(info.value)
    assert "unknown reward 'acuracy'" in message
    assert all(name in message for name in REWARD_NAMES)


def test_user_reward_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        textwrap.dedent(
            """
            def shortness(completions, **columns):
                return [None if c == "skip" else 1.0 / len(c) for c in completions]

            def wrong_length(completions, **columns):
                return [0.0]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = build_reward_fn(["format", "my_rewards:shortness"], [1.0, 0.5])
    out = fn(["ab", "skip", "x\n</think>\n"])
    assert fn.names == ("format", "shortness")
    assert np.isnan(out.per_function["shortness"][1])
    np.testing.assert_allclose(out.total, [0.25, 0.0, 1.0 + 0.5 / 11])
    assert out.metrics["rewards/shortness/mean"] == pytest.approx((0.5 + 1 / 11) / 2)
    with pytest.raises(ValueError, match="returned 1 values for 2 completions"):
        build_reward_fn(["my_rewards:wrong_length"])(["a", "b"])
    with pytest.raises(ValueError, match="has no function 'nope'"):
        build_reward_fn(["my_rewards:nope"])
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        build_reward_fn(["no_such_module:f"])


def test_weights_must_match_names():
    with pytest.raises(ValueError, match="2 reward weights for 1 rewards"):
        build_reward_fn(["format"], [1.0, 2.0])
    with pytest.raises(ValueError, match="listed twice"):
        build_reward_fn(["format", "format"])
