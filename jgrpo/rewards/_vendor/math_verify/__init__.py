"""math-verify 0.5.2 (parse, verify and their configs only), vendored unchanged but for import paths.

See jgrpo/rewards/_vendor/README.md."""

from jgrpo.rewards._vendor.latex2sympy2_extended.latex2sympy2 import NormalizationConfig as LatexNormalizationConfig
from jgrpo.rewards._vendor.math_verify.grader import verify
from jgrpo.rewards._vendor.math_verify.parser import (
    ExprExtractionConfig,
    LatexExtractionConfig,
    StringExtractionConfig,
    parse,
)

__all__ = ["ExprExtractionConfig", "LatexExtractionConfig", "LatexNormalizationConfig", "StringExtractionConfig",
           "parse", "verify"]
