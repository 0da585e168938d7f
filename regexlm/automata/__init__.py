"""Regular expressions to byte-level DFAs with Python ``re.fullmatch`` semantics.

``compile_regex(pattern)`` returns a :class:`DFA` over UTF-8 bytes that accepts exactly the
strings Python's ``re.fullmatch(pattern, s)`` accepts. The pipeline, one module per stage:

* ``parse``    Python's own parser -> a small flag-free syntax tree; unsupported constructs.
* ``unicode``  ``\\w \\d \\s`` and ``(?i)`` folding, read off the running Python's ``re``.
* ``charset``  code-point sets as range tuples.
* ``utf8``     a code-point set -> the minimal byte automaton of its UTF-8 encodings.
* ``nfa``      Thompson NFA over characters; assertions removed by tracking context.
* ``dfa``      subset construction over byte classes; the :class:`DFA` class.
* ``lazy``     the same construction on demand, within a byte budget: :class:`LazyDFA`.
* ``minimize`` pruning of states that cannot match, Hopcroft minimization, byte classes.
* ``limits``   state, size and time limits.
"""

from regexlm.automata.compiler import compile_lazy, compile_regex
from regexlm.automata.dfa import DEAD, DFA
from regexlm.automata.lazy import LazyDFA

__all__ = ["compile_regex", "compile_lazy", "DFA", "LazyDFA", "DEAD"]
