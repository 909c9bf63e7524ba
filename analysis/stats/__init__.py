"""The statistics, as small pure functions with named results (no files, no plots).

- `paired` compares one arm with a baseline over seeds (`compare`); `paired_tests` holds the
  tests it runs; `skew_guard` keeps the paired t honest on skewed differences; `verdicts` turns
  a comparison into one of four verdicts;
- `family`: several arms at once, Holm and an omnibus test; `describe`: one arm's seeds;
- `power`: seeds needed and detectable differences; `test_set_noise`: a finite test set as a
  sample (McNemar, single-run gaps);
- `failures`: diverged and never-learned runs as outcomes; `direction` and `metric_plan`: what
  is analysed and which way is better;
- `variance` and `variance_components`: where run-to-run variance comes from.
"""
