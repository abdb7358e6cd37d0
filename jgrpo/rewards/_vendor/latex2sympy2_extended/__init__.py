from .latex2sympy2 import latex2sympy
from .math_normalization import normalize_latex, NormalizationConfig
from .latex2sympy2 import is_expr_of_only_symbols

__all__ = ['latex2sympy', 'normalize_latex', 'NormalizationConfig', 'is_expr_of_only_symbols']
