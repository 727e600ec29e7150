"""The attention benchmark behind ``multihead bench``: cases and competitors
(:mod:`~multihead.benchmark.cases`), interleaved timing (:mod:`~multihead.benchmark.timing`),
peak memory in a fresh process (:mod:`~multihead.benchmark.memory`), the models compared
against (:mod:`~multihead.benchmark.baselines`), and the run and its report
(:mod:`~multihead.benchmark.runner`, :mod:`~multihead.benchmark.report`)."""
