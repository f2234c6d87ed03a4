#!/usr/bin/python3
"""Writes friedman1.csv, the regression data set of examples/regress_csv.c: Friedman's first
benchmark function (J. H. Friedman, "Multivariate adaptive regression splines", Annals of
Statistics 19(1), 1991): ten features x1..x10 uniform on [0, 1], of which only the first five
matter, and the target
    y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + e,   e ~ N(0, 1),
so no model can get a root-mean-square error below 1 on new samples. 2,000 rows, seed 1;
the standard library only, so the file is the same on any Python 3."""
import math
import random

rng = random.Random(1)
with open("friedman1.csv", "w") as f:
    f.write(",".join("x%d" % i for i in range(1, 11)) + ",y\n")
    for _ in range(2000):
        x = [rng.random() for _ in range(10)]
        y = (10 * math.sin(math.pi * x[0] * x[1]) + 20 * (x[2] - 0.5) ** 2 + 10 * x[3]
             + 5 * x[4] + rng.gauss(0, 1))
        f.write(",".join("%.5f" % v for v in x) + ",%.5f\n" % y)
