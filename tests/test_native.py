"""The C library's helpers on the Python side."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from regexlm import native


@given(
    size=st.integers(0, 300),
    dtype=st.sampled_from([np.uint8, np.int32, np.int64, np.uint16]),
    offset=st.integers(0, 5),
    writeable=st.booleans(),
)
def test_an_arrays_address_is_numpys(size, dtype, offset, writeable):
    base = np.zeros(size + offset, dtype=dtype)
    a = base[offset:]  # a view that starts past its buffer's first byte
    a.flags.writeable = writeable
    assert native.address(a) == a.ctypes.data


@pytest.mark.parametrize("writeable", [True, False])
def test_a_noncontiguous_array_is_refused_not_misread(writeable):
    a = np.zeros(10, dtype=np.int32)[::2]
    a.flags.writeable = writeable
    with pytest.raises((TypeError, ValueError, BufferError)):
        native.address(a)
