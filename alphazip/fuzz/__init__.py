"""A fuzzing harness for the archive reader: hostile archives in, every outcome classified.

Archives are input from strangers, so the reader must answer each one with the original bytes or
one of our errors, in bounded time and memory. The harness forges archives of several kinds
(:mod:`.cases`), decodes each in a worker process under a time and an address-space limit
(:mod:`.outcome`, :mod:`.runner`) and counts the outcomes; any outcome but "exact", "parsed"
or "clean" is a hole in the reader. ``scripts/fuzz_archives.py`` is its command line,
``tests/test_fuzz.py`` runs it in CI, ``scripts/fuzz_atheris.py`` adds coverage-guided search
over the same reader.

Modules: ``seeds`` (valid archives to start from), ``forgery`` (byte-level writers that keep
CRCs valid), ``bombs`` (payloads that expand enormously), ``cases`` (the kinds of hostile
archive), ``outcome`` (running one case under limits and classifying it), ``runner`` (worker
processes, the table, saving and replaying failures), ``format3`` (hostile compact headers and
lying records of format 3), ``lies`` and ``headers`` (the same for formats 2 and 1).
"""

from .cases import KINDS, make_case
from .outcome import FAILURES, OUTCOMES, Case, Result
from .runner import Pool, Summary

__all__ = ["FAILURES", "KINDS", "OUTCOMES", "Case", "Pool", "Result", "Summary", "make_case"]
