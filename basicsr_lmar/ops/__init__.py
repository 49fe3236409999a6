"""Numerical operators: each has a readable reference path and, where it matters, a fast path tested
against it, behind one signature."""
