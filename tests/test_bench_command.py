"""``regexlm bench`` measures a pattern end to end and prints one row per pattern."""

from __future__ import annotations

from regexlm.cli import main


def test_bench_prints_a_row_per_pattern(capsys):
    code = main(
        [
            "bench",
            "--pattern",
            r"\d{3}",
            "--pattern",
            "[a-z]+!",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--backend",
            "torch",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "vocabulary 49152" in out
    assert "set-up, once per process and vocabulary" in out
    rows = [line for line in out.splitlines() if line.startswith((r"\d{3}", "[a-z]+!"))]
    assert len(rows) == 2
    for row in rows:
        fields = row.split()
        first_mask_ms, explore_ms, states = float(fields[1]), float(fields[2]), int(fields[3])
        assert first_mask_ms > 0 and explore_ms >= 0
        assert states >= 2  # start and at least one more state, the exploration done
        assert float(fields[-1]) > 0  # a ratio against the unconstrained step
