"""Seeds until decided: a pre-registered group-sequential design.

`plan` is the stored design (`SequentialPlan`), `boundaries` the alpha-spending boundaries it
implies, `looks` one comparison's path through the looks, `decide` the decision rule at a look,
and `simulate` the vectorised simulation of a design (benchmarks and tests).
"""
