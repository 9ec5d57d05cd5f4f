"""Running the benchmark sections and keeping their results: ``benchmarks.json`` holds every
section's numbers (so one section can be re-measured and the others kept) and ``BENCHMARKS.md``
is rendered from that file alone (:func:`regenerate_report` re-renders it without measuring)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from latentface.tools.bench.accuracy import accuracy_variants, bridge_comparison, prepare_data, rates_section
from latentface.tools.bench.codecs import codecs_section
from latentface.tools.bench.cost import cost_section, train_section
from latentface.tools.bench.measure import machine
from latentface.tools.bench.profiles import REPORT_FILE, RESULTS_FILE, SECTIONS, Profile
from latentface.tools.bench.report import (
    COST_FIGURE,
    FRONTIER_FIGURE,
    RATES_FIGURE,
    plot_cost,
    plot_figures,
    plot_frontier,
    plot_rates,
    write_report,
)
from latentface.util.io import read_json, write_json


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_sections(text: str) -> list[str]:
    """``"cost,train"`` -> the section names; an unknown or empty list is a ValueError naming the choices."""
    sections = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise ValueError(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    return sections


def load_results(out: Path) -> dict:
    """The stored results under ``out`` ({} when there are none)."""
    store = Path(out) / RESULTS_FILE
    return read_json(store, "benchmark results") if store.is_file() else {}


def regenerate_report(out: str | Path = "docs") -> Path:
    """``BENCHMARKS.md`` and the figures again from ``out/benchmarks.json``, measuring nothing."""
    out = Path(out)
    results = read_json(out / RESULTS_FILE, "benchmark results")
    plot_figures(results, out)
    return write_report(results, out)


def run_bench(
    sections: Sequence[str],
    profile: Profile,
    device: torch.device,
    out: str | Path = "docs",
    runs: str | Path | None = None,
    fresh: bool = False,
    variants: Sequence[str] | None = None,
    reuse_only: bool = False,
    command: str = "latentface bench",
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Measure ``sections`` with ``profile``, store the results beside the others' and rewrite the report.

    ``variants`` restricts the accuracy section to those variant names; ``reuse_only`` evaluates
    finished training runs only. Returns the report's path.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(runs) if runs else Path("runs") / "bench" / profile.name
    results = {} if fresh else load_results(out)
    if results.get("profile") not in (None, profile.name):
        results = {}  # numbers of another profile are not comparable with these
    results.update(profile=profile.name, settings=profile.to_dict(), machine=machine(), command=command)
    data_root = None
    if any(s in sections for s in ("train", "accuracy", "rates")):
        data_root = prepare_data(runs / "data", profile, log)
    for section in SECTIONS:
        if section not in sections:
            continue
        start = time.perf_counter()
        if section == "cost":
            results["cost"] = cost_section(profile, device, log)
            plot_cost(results["cost"], out / COST_FIGURE)
        elif section == "train":
            results["train"] = train_section(profile, device, data_root, log)
        elif section == "accuracy":
            chosen = [v for v in accuracy_variants(profile) if v.name in variants] if variants else None
            results["accuracy"] = bridge_comparison(profile, data_root, runs, device, chosen, log, reuse_only)
        elif section == "rates":
            results["rates"] = rates_section(profile, data_root, runs, device, log, reuse_only)
            plot_rates(results["rates"], out / RATES_FIGURE)
        else:

            def save(codecs: dict, results: dict = results) -> None:  # after every study run: resumable
                store_section(results, "codecs", codecs, out, merge=not fresh)
                plot_frontier(codecs, out / FRONTIER_FIGURE)

            results["codecs"] = codecs_section(
                profile, runs / "codecs", device, results.get("codecs"), save, log, reuse_only
            )
        log(f"bench: {section} done in {time.perf_counter() - start:.0f} s")
        results = store_section(results, section, results[section], out, merge=not fresh)
    return out / REPORT_FILE


def store_section(results: dict, section: str, value: dict, out: Path, merge: bool = True) -> dict:
    """Write ``section`` into the stored results and rewrite the report; with ``merge`` the other sections are
    read back from the store first, so two bench processes measuring different sections (one running the long
    codec study) do not overwrite each other's. Returns the results as stored."""
    stored = load_results(out) if merge else {}
    if stored.get("profile") != results.get("profile"):
        stored = {}
    merged = json.loads(json.dumps({**results, **stored, section: value}, default=float))  # plain JSON numbers
    merged.update({k: results[k] for k in ("profile", "settings", "machine", "command") if k in results})
    write_json(out / RESULTS_FILE, merged)
    write_report(merged, out)
    return merged
