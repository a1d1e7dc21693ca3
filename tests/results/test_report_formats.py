"""Paper-ready report output: every figure also as PDF and SVG, the main tables as CSV and LaTeX, holding the
numbers of the Markdown summary and of the analysis frames."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from lth_ray.results import analysis as A
from lth_ray.results.tables import latex


@pytest.fixture(scope="module")
def report_dir(tiny_experiment, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paper") / "report"
    done = subprocess.run(
        [sys.executable, "-m", "lth_ray.cli", "report", str(tiny_experiment), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


def markdown_rows(text: str, heading: str, nth: int = 0) -> list[list[str]]:
    """The body rows of the nth table after `heading` in summary.md, as cell strings."""
    tables, table = [], []
    for line in text[text.index(heading) :].splitlines()[1:] + [""]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            tables.append(table)
            table = []
    return [[c.strip() for c in line.strip("|").split("|")] for line in tables[nth][2:]]


def latex_rows(path: Path) -> list[list[str]]:
    """The body rows of a booktabs tabular (between \\midrule and \\bottomrule)."""
    return latex_rows_from_text(path.read_text())


def test_every_png_figure_has_a_pdf_and_an_svg_beside_it(report_dir):
    pngs = sorted(report_dir.glob("*.png"))
    assert {p.stem for p in pngs} >= {
        "accuracy_vs_sparsity",
        "early_stop_vs_sparsity",
        "history-lenet",
        "layer_sparsity-lenet",
        "masks-lenet",
    }
    for png in pngs:
        pdf, svg = png.with_suffix(".pdf"), png.with_suffix(".svg")
        assert pdf.read_bytes()[:5] == b"%PDF-" and b"%%EOF" in pdf.read_bytes()[-1024:]
        root = ET.parse(svg).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg" and len(list(root.iter())) > 50
    md = (report_dir / "summary.md").read_text()
    assert "![accuracy_vs_sparsity](accuracy_vs_sparsity.png)" in md and ".pdf)" not in md  # Markdown unchanged


def test_rounds_table_equals_the_markdown_and_the_analysis_frames(report_dir, tiny_experiment):
    csv = pd.read_csv(report_dir / "rounds.csv")
    md = markdown_rows((report_dir / "summary.md").read_text(), "### lenet")
    assert len(csv) == len(md) == 3 + 2 + 2  # imp rounds 0..2, reinit and random-prune rounds 1..2

    def spread(r, m, digits):
        f = f"{{:.{digits}f}}"
        return f"{f.format(r[m + '_mean'])} [{f.format(r[m + '_min'])}, {f.format(r[m + '_max'])}]"

    for (_, r), cells in zip(csv.iterrows(), md):
        assert cells == [
            r["method"],
            str(r["round"]),
            f"{r['percent_remaining']:.1f}",
            str(r["seeds"]),
            spread(r, "test_acc_at_early_stop", 2),
            spread(r, "early_stop_iteration", 0),
            spread(r, "final_test_acc", 2),
        ]
    summary = A.summarise(A.load_experiment(tiny_experiment).rounds).sort_values(["method", "round"])
    assert csv["method"].tolist() == summary["method"].tolist() and csv["round"].tolist() == summary["round"].tolist()
    for m in ("test_acc_at_early_stop", "final_test_acc"):
        for s in ("mean", "min", "max"):
            assert csv[f"{m}_{s}"].to_numpy() == pytest.approx(100 * summary[f"{m}_{s}"].to_numpy(), rel=1e-12)
    assert csv["early_stop_iteration_mean"].to_numpy() == pytest.approx(summary["early_stop_iteration_mean"].to_numpy())
    assert csv["percent_remaining"].to_numpy() == pytest.approx(100 * summary["sparsity"].to_numpy(), rel=1e-12)
    tex = latex_rows(report_dir / "rounds.tex")
    assert len(tex) == len(csv)
    for (_, r), cells in zip(csv.iterrows(), tex):
        assert cells[:5] == ["lenet", r["method"], str(r["round"]), f"{r['percent_remaining']:.1f}", str(r["seeds"])]
        assert (
            cells[5] == f"{r['test_acc_at_early_stop_mean']:.2f}"
            and cells[8] == f"{r['early_stop_iteration_mean']:.0f}"
        )
    header = (report_dir / "rounds.tex").read_text()
    assert "\\begin{tabular}" in header and " & percent remaining & " in header  # readable LaTeX headers


def test_winning_tickets_table_equals_the_analysis_frame(report_dir, tiny_experiment):
    csv = pd.read_csv(report_dir / "winning_tickets.csv")
    w = A.winning_ticket(A.summarise(A.load_experiment(tiny_experiment).rounds))
    assert len(csv) == len(w) == 1 and csv["ticket"].tolist() == ["imp"]
    assert csv["dense_test_acc"].iloc[0] == pytest.approx(100 * w["dense_test_acc_at_early_stop"].iloc[0])
    for col, frame_col, k in (
        ("ticket_test_acc", "ticket_test_acc_at_early_stop", 100),
        ("speedup", "speedup", 1),
        ("gap_reinit", "gap_reinit", 100),
        ("best_gain", "best_gain", 100),
        ("max_speedup", "max_speedup", 1),
    ):
        a, b = csv[col].iloc[0], w[frame_col].iloc[0]
        assert (np.isnan(a) and pd.isna(b)) or a == pytest.approx(k * b), col
    md = markdown_rows((report_dir / "summary.md").read_text(), "## Winning tickets")
    assert md[0][2] == f"{csv['dense_test_acc'].iloc[0]:.2f}"
    tex = latex_rows(report_dir / "winning_tickets.tex")
    assert tex[0][:3] == ["lenet", "imp", f"{csv['dense_test_acc'].iloc[0]:.2f}"]


def test_latex_writes_missing_values_as_na_and_the_markdown_digits():
    frame = pd.DataFrame(
        {
            "configuration": ["conv_2"],
            "ticket_round": pd.array([pd.NA], dtype="Int64"),
            "percent_remaining": [51.2649],
            "speedup": [np.nan],
            "loss_barrier_mean": [0.12345],
        }
    )
    rows = latex_rows_from_text(latex(frame))
    assert rows == [["conv\\_2", "n/a", "51.3", "n/a", "0.123"]]


def latex_rows_from_text(text: str) -> list[list[str]]:
    body = text[text.index("\\midrule") + len("\\midrule") : text.index("\\bottomrule")]
    return [[c.strip() for c in line.rstrip().removesuffix("\\\\").split("&")] for line in body.strip().splitlines()]


def test_every_method_per_density_table_equals_the_markdown_and_the_analysis_frame(pai_experiment, tmp_path):
    from lth_ray.results.report import main

    assert main([str(pai_experiment), "--out", str(tmp_path / "r")]) == 0
    csv = pd.read_csv(tmp_path / "r" / "methods-lenet.csv")
    summary = A.summarise(A.load_experiment(pai_experiment).rounds)
    wide = A.methods_table(summary, next(iter(A.config_labels(summary))))
    assert list(csv.columns) == ["round", "percent_remaining", *wide.columns[1:]]
    assert "grasp-shuffle" in csv.columns and csv["round"].tolist() == wide.index.tolist()
    for m in wide.columns[1:]:
        assert csv[m].to_numpy() == pytest.approx(100 * wide[m].to_numpy(), nan_ok=True), m
    md = markdown_rows((tmp_path / "r" / "summary.md").read_text(), "## Every method per density")
    tex = latex_rows(tmp_path / "r" / "methods-lenet.tex")
    for (_, r), cells, tex_cells in zip(csv.iterrows(), md, tex, strict=True):
        expected = [
            str(int(r["round"])),
            f"{r['percent_remaining']:.1f}",
            *("n/a" if np.isnan(r[m]) else f"{r[m]:.2f}" for m in wide.columns[1:]),
        ]
        assert cells == expected and tex_cells == expected


def test_instability_tables_equal_the_markdown(tiny_experiment):
    """The session's sweep with hand-made barriers for its ticket's rounds (no figures drawn): both Instability
    tables of summary.md, cell by cell, from the CSV frames."""
    from lth_ray.results.report import _slug, summary_markdown
    from lth_ray.results.tables import report_tables

    exp = A.load_experiment(tiny_experiment)
    ticket = exp.rounds[exp.rounds["method"] == "imp"]
    exp.instability = ticket[A.CONFIG + ["trial_id", "method", "seed", "round", "sparsity"]].assign(
        error_barrier=0.005 + 0.01 * ticket["round"] + 0.002 * ticket["seed"], loss_barrier=0.1 * ticket["round"]
    )
    tables = report_tables(exp, _slug)
    md = summary_markdown(exp, str(tiny_experiment), [])
    rows = tables["instability"]
    assert len(rows) == 3 and rows["error_barrier_max"].tolist() == pytest.approx([0.7, 1.7, 2.7])
    text = md[md.index("## Instability") :]
    per_round = markdown_rows(md, "## Instability", nth=1)
    for (_, r), cells in zip(rows.iterrows(), per_round, strict=True):
        assert cells == [
            "lenet",
            str(r["round"]),
            f"{r['percent_remaining']:.1f}",
            str(r["seeds"]),
            f"{r['error_barrier_mean']:.2f} [{r['error_barrier_min']:.2f}, {r['error_barrier_max']:.2f}]",
            f"{r['loss_barrier_mean']:.3f}",
        ]
    best = tables["instability_stable_matching"].iloc[0]
    cells = markdown_rows(text, "## Instability")[0]
    level = "none" if pd.isna(best["round"]) else f"round {best['round']} ({best['percent_remaining']:.1f}%)"
    na = lambda v: "n/a" if pd.isna(v) else f"{v:.2f}"  # noqa: E731
    assert cells == ["lenet", "imp", level, na(best["error_barrier"]), na(best["test_acc"])]
