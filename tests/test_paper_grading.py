"""Paper-exact and corrected grading, checked against fixtures written by the original code.

tests/fixtures/open_rs_training_rewards.json: open-rs 2889c47's accuracy_reward and
cosine_scaled_reward (Exp3 parameters) run with math-verify 0.5.2 / latex2sympy2_extended 1.0.6 on
142 completions (several boxes, malformed, empty, up to 60,000 characters, tiny numbers).
tests/fixtures/lighteval_extractive_match.json: lighteval ed084813's extractive match, configured as
open-rs's evaluate.py configured it, on 2,906 predictions over the five benchmarks.
tests/fixtures/jgrpo_grader_differences.json: every item where the corrected (jgrpo) grader
disagrees with the original, with the rule of EVALUATION.md that makes it disagree.
See EVALUATION.md for how the fixtures were made.
"""

import json
import math
from pathlib import Path

import pytest

from jgrpo.benchmarks import BENCHMARKS, load_benchmark
from jgrpo.grading import (
    LIGHTEVAL_GOLDS,
    Grader,
    GradingOptions,
    Verdict,
    final_answer_text,
    last_boxed,
    lighteval_gold,
    normalize_gold,
    numbers_disagree,
    rewrite_e_notation,
)
from jgrpo.rewards import CosineOptions, RewardOptions, build_reward_fn

FIXTURES = Path(__file__).parent / "fixtures"
TRAINING = json.loads((FIXTURES / "open_rs_training_rewards.json").read_text())
EVALUATION = json.loads((FIXTURES / "lighteval_extractive_match.json").read_text())
DIFFERENCES = json.loads((FIXTURES / "jgrpo_grader_differences.json").read_text())
RULES = {"1-final-box", "2-e-notation", "3-relative-tolerance", "5-gold-is-cleaned-answer",
         "6-installed-math-verify", "7-cosine-uses-the-accuracy-test"}


@pytest.fixture(scope="module")
def paper_grader():
    with Grader(GradingOptions(num_workers=2, deadline_s=60, mode="open-rs")) as g:
        yield g


@pytest.fixture(scope="module")
def jgrpo_grader():
    with Grader(GradingOptions(num_workers=2, deadline_s=60)) as g:
        yield g


def test_fixtures_cover_what_the_issue_asks_for():
    items = TRAINING["items"]
    kinds = {it["kind"] for it in items}
    assert len(items) >= 50
    assert {"several_boxes", "several_boxes_adjacent", "several_boxes_sep", "malformed_or_variant", "empty",
            "long"} <= kinds
    assert max(len(it["completion"]) for it in items) > 10 * 3584
    assert TRAINING["meta"]["libraries"]["math-verify"] == "0.5.2"
    assert TRAINING["meta"]["libraries"]["latex2sympy2_extended"] == "1.0.6"
    evaluation = EVALUATION["items"]
    assert len(evaluation) >= 1000
    assert {it["benchmark"] for it in evaluation} == set(BENCHMARKS)
    assert EVALUATION["meta"]["libraries"]["latex2sympy2_extended"] == "1.0.6"


# --- training rewards, open-rs mode: item for item ------------------------------------------


def _rewards(names, completions, golds, grader, options):
    return build_reward_fn(names, None, options, grader)(completions, solution=golds)


def test_open_rs_mode_reproduces_the_original_rewards_item_for_item(paper_grader):
    items = TRAINING["items"]
    completions = [it["completion"] for it in items]
    golds = [it["gold"] for it in items]
    options = RewardOptions(grading=GradingOptions(mode="open-rs"), cosine=CosineOptions())  # Exp3's values
    out = _rewards(["accuracy", "cosine"], completions, golds, paper_grader, options)
    accuracy, cosine = out.per_function["accuracy"], out.per_function["cosine"]
    mismatches = [i for i, it in enumerate(items) if accuracy[i] != it["accuracy"]]
    assert mismatches == [], [(i, items[i]["kind"]) for i in mismatches]
    assert not any(it["cosine_raises"] for it in items)  # no item made open-rs's cosine raise
    mismatches = [i for i, it in enumerate(items) if not math.isclose(cosine[i], it["cosine"], abs_tol=1e-12)]
    assert mismatches == [], [(i, items[i]["kind"], cosine[i], items[i]["cosine"]) for i in mismatches]


def test_open_rs_cosine_has_its_own_correctness_test(paper_grader):
    # boxed=True in cosine's NormalizationConfig: \text{3} is right for accuracy, wrong for cosine.
    items = [it for it in TRAINING["items"] if it["accuracy"] == 1.0 and it["cosine_correct"] is False]
    assert items
    completions, golds = [it["completion"] for it in items], [it["gold"] for it in items]
    assert paper_grader.grade_open_rs(completions, golds, "accuracy") == [Verdict.CORRECT] * len(items)
    assert paper_grader.grade_open_rs(completions, golds, "cosine") == [Verdict.WRONG] * len(items)


# --- training rewards, jgrpo mode: differs only by a documented rule ---------------------------


def test_jgrpo_mode_differs_from_open_rs_only_where_a_rule_says_so(jgrpo_grader):
    items = TRAINING["items"]
    verdicts = jgrpo_grader.grade_open_rs([it["completion"] for it in items], [it["gold"] for it in items])
    expected = {d["index"]: d for d in DIFFERENCES["training"]}
    differing = {}
    for i, (it, v) in enumerate(zip(items, verdicts)):
        accuracy = 1.0 if v in (Verdict.CORRECT, Verdict.GOLD_UNPARSEABLE) else 0.0
        cosine_differs = it["cosine_correct"] is not None and (v is Verdict.CORRECT) != it["cosine_correct"]
        if accuracy != it["accuracy"] or cosine_differs:
            differing[i] = v.value
    assert differing == {i: d["jgrpo"] for i, d in expected.items()}
    assert {d["rule"] for d in expected.values()} == {"1-final-box", "2-e-notation", "3-relative-tolerance",
                                                       "6-installed-math-verify", "7-cosine-uses-the-accuracy-test"}


@pytest.mark.parametrize("completion, gold, expected", [
    # rule 1: the final box is the answer, whatever separates the boxes
    ("So $\\boxed{3}$ and $\\boxed{5}$", "$\\boxed{5}$", Verdict.CORRECT),
    ("So $\\boxed{3}$ and $\\boxed{5}$", "$\\boxed{3}$", Verdict.WRONG),
    ("\\boxed{3}\n\nwait.\n\nFinal: \\boxed{5}", "$\\boxed{5}$", Verdict.CORRECT),
    # rule 2: e-notation in the gold or in the box is a power of ten
    ("$\\boxed{1.24 \\times 10^{-8}}$", "$\\boxed{1.24e-8}$", Verdict.CORRECT),
    ("$\\boxed{1.24e-8}$", "$\\boxed{1.24 \\times 10^{-8}}$", Verdict.CORRECT),
    ("$\\boxed{1.24 \\times 10^{-7}}$", "$\\boxed{1.24e-8}$", Verdict.WRONG),
    # rule 3: relative tolerance, so tiny numbers off by 10x are wrong and rounding still passes
    ("$\\boxed{2.88 \\times 10^{-19}}$", "$\\boxed{2.88 \\times 10^{-18}}$", Verdict.WRONG),
    ("$\\boxed{0.000001}$", "$\\boxed{0.000002}$", Verdict.WRONG),
    ("$\\boxed{0.333333}$", "$\\boxed{\\frac{1}{3}}$", Verdict.CORRECT),
    ("$\\boxed{4.5 \\times 10^{33}}$", "$\\boxed{4.5 \\times 10^{33}}$", Verdict.CORRECT),
])
def test_jgrpo_rules(jgrpo_grader, completion, gold, expected):
    assert jgrpo_grader.grade_open_rs([completion], [gold]) == [expected]


def test_rule_helpers():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{1} \\boxed{") == "1"  # an unclosed box is not an answer
    assert last_boxed("no box") is None
    assert rewrite_e_notation("4.5e33 and 1e-5 but not e5x or x2e3") == \
        "4.5 \\times 10^{33} and 1 \\times 10^{-5} but not e5x or x2e3"
    assert final_answer_text("x $\\boxed{221,$8}$") == "$\\boxed{221,8}$"
    import sympy

    assert numbers_disagree([sympy.Float(2.88e-18), "2.88e-18"], [sympy.Float(2.88e-19)])
    assert not numbers_disagree([sympy.Rational(1, 3)], [sympy.Float(0.333333)])
    assert not numbers_disagree([sympy.Symbol("x")], [sympy.Float(1.0)])


def test_grading_mode_is_checked():
    with pytest.raises(ValueError, match="^mode 'paper' is not one of jgrpo, open-rs$"):
        GradingOptions(mode="paper")


# --- evaluation, lighteval mode: item for item ---------------------------------------------


def test_lighteval_golds_are_the_tasks_golds():
    """The gold chosen from a bundled row is the one the fixture's lighteval run graded against."""
    rows = {b: {str(r["id"]): r for r in load_benchmark(b)} for b in BENCHMARKS}
    for key, gold in EVALUATION["golds"].items():
        benchmark, row_id = key.split("/", 1)
        assert lighteval_gold(benchmark, rows[benchmark][row_id]) == (gold, LIGHTEVAL_GOLDS[benchmark][1])


def test_lighteval_mode_reproduces_the_original_scores_item_for_item(paper_grader):
    items = EVALUATION["items"]
    golds = [(EVALUATION["golds"][f'{it["benchmark"]}/{it["id"]}'], LIGHTEVAL_GOLDS[it["benchmark"]][1])
             for it in items]
    verdicts = paper_grader.grade_lighteval([it["prediction"] for it in items], golds)
    mismatches = [(i, it["benchmark"], it["kind"], v.value) for i, (it, v) in enumerate(zip(items, verdicts))
                  if (v is Verdict.CORRECT) != (it["score"] == 1.0)]
    assert mismatches == []


def test_jgrpo_eval_grader_differs_only_where_a_rule_says_so(jgrpo_grader):
    items = EVALUATION["items"]
    rows = {b: {str(r["id"]): r for r in load_benchmark(b)} for b in BENCHMARKS}
    golds = [(normalize_gold(rows[it["benchmark"]][it["id"]]["answer"]),) for it in items]
    verdicts = jgrpo_grader.grade_extractive([it["prediction"] for it in items], golds)
    differing = {i: v.value for i, (it, v) in enumerate(zip(items, verdicts))
                 if (v is Verdict.CORRECT) != (it["score"] == 1.0)}
    expected = {d["index"]: d for d in DIFFERENCES["evaluation"]}
    assert differing == {i: d["jgrpo"] for i, d in expected.items()}
    assert {d["rule"] for d in expected.values()} == {"2-e-notation", "5-gold-is-cleaned-answer",
                                                       "6-installed-math-verify"}
    assert {d["rule"] for d in DIFFERENCES["training"] + DIFFERENCES["evaluation"]} == RULES


def test_verify_exceptions(monkeypatch):
    """Rule 4: an exception from verify is a wrong answer in jgrpo mode; open-rs's accuracy catches it
    too, its cosine does not (the pool turns that into Verdict.ERROR, scored as wrong and counted)."""
    import math_verify

    from jgrpo.grading import jgrpo_verdict, open_rs_cosine_verdict, open_rs_verdict
    from jgrpo.rewards._vendor import math_verify as vendored

    def boom(*args, **kwargs):
        raise RuntimeError("verify failed")

    monkeypatch.setattr(math_verify, "verify", boom)
    monkeypatch.setattr(vendored, "verify", boom)
    assert jgrpo_verdict("$\\boxed{3}$", "$\\boxed{3}$") is Verdict.WRONG
    assert open_rs_verdict("$\\boxed{3}$", "$\\boxed{3}$") is Verdict.WRONG
    with pytest.raises(RuntimeError, match="verify failed"):
        open_rs_cosine_verdict("$\\boxed{3}$", "$\\boxed{3}$")
