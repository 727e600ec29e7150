"""The attention benchmark behind ``multihead bench``: cases and competitors
(:mod:`~multihead_apps.bench.cases`), interleaved timing (:mod:`~multihead_apps.bench.timing`),
peak memory in a fresh process (:mod:`~multihead_apps.bench.memory`), the models compared
against (:mod:`~multihead_apps.bench.baselines`), and the run and its report
(:mod:`~multihead_apps.bench.runner`, :mod:`~multihead_apps.bench.report`)."""
