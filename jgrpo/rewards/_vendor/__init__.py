"""Vendored copies of the grading libraries the open-rs paper ran with (see README.md here).

Used only by the paper-exact grading modes (``open-rs`` for training rewards, ``lighteval`` for
evaluation); the corrected ``jgrpo`` mode uses the installed math-verify.
"""
