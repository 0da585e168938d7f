"""``regexlm.generate``: the one-call entry point, importable as a module and callable.

Both spellings work and give the same object::

    import regexlm.generate
    regexlm.generate("The date today is ", r"\\d{4}-\\d{2}-\\d{2}", max_new_tokens=12)

    from regexlm import generate
    generate("The date today is ", r"\\d{4}-\\d{2}-\\d{2}", max_new_tokens=12)

Importing ``regexlm.generate`` binds the submodule to the attribute ``regexlm.generate``, so the
module object itself is made callable: calling it calls
:func:`regexlm.generation.default.generate` (see there for the parameters). The attribute
``generate`` of this module is the module itself, which is what ``from regexlm import generate``
resolves to.
"""

from __future__ import annotations

import inspect
import sys
import types

from regexlm.generation.default import generate as _generate


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return _generate(*args, **kwargs)


__signature__ = inspect.signature(_generate)

sys.modules[__name__].__class__ = _CallableModule
generate = sys.modules[__name__]
