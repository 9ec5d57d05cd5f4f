"""``latentface bench``: every table and figure of ``docs/BENCHMARKS.md`` from one command.

::

    latentface bench                       # CPU-sized run of every section -> docs/
    latentface bench --sections cost       # re-measure one section, keep the others' results
    latentface bench --sections codecs     # the codec study; resumes from its stored runs
    latentface bench --report_only         # BENCHMARKS.md and figures again from docs/benchmarks.json
    latentface bench --quick --out /tmp/b  # tiny sizes, under a minute (what the tests run)
    latentface bench --full --device cuda  # the full-size study (640x640, ResNet-50), for a GPU

Every comparison is made within one run and reported as a ratio to the RGB baseline, with
the machine named. Latencies are medians over repeats in which the models take turns
(so a load change on a shared machine hits every model alike); accuracy comparisons use
the same optimiser steps, data order and seed for every model, never the same wall time.

Modules: :mod:`.profiles` (the sizes of a run), :mod:`.measure` (the building blocks the
bridge-design notebook uses: :func:`model_cost`, :func:`latency`, :func:`activation_peak`,
:func:`effective_receptive_field`), :mod:`.cost` (the cost and train sections), :mod:`.accuracy`
(data, variants, the accuracy and rates sections), :mod:`.codecs` (the codec study: both codecs,
several seeds, the decoders, the frontier), :mod:`.report`, :mod:`.codec_report` and :mod:`.notes`
(the report, rendered from the stored results only), :mod:`.runner` (sections -> ``benchmarks.json`` -> report).
"""

from latentface.tools.bench.accuracy import (
    Variant,
    accuracy_variants,
    bridge_comparison,
    decoded_root,
    evaluate_run,
    prepare_data,
    rates_section,
    train_variant,
)
from latentface.tools.bench.codecs import JPEG_AI_DECODERS, codecs_section, decoder_macs, study_jobs
from latentface.tools.bench.cost import cost_models, cost_section, train_section, train_step_cost
from latentface.tools.bench.measure import (
    activation_peak,
    effective_receptive_field,
    inference_call,
    latency,
    machine,
    macs,
    model_cost,
    model_input,
    parameters,
    saved_for_backward,
)
from latentface.tools.bench.notes import notes
from latentface.tools.bench.profiles import (
    BASELINE,
    PROFILES,
    REPORT_FILE,
    RESULTS_FILE,
    SECTIONS,
    Profile,
    recipe_schedule,
)
from latentface.tools.bench.report import (
    accuracy_table,
    cost_table,
    plot_cost,
    plot_rates,
    render_report,
    targets,
    write_report,
)
from latentface.tools.bench.runner import load_results, parse_sections, regenerate_report, run_bench

__all__ = [
    "BASELINE",
    "JPEG_AI_DECODERS",
    "PROFILES",
    "REPORT_FILE",
    "RESULTS_FILE",
    "SECTIONS",
    "Profile",
    "Variant",
    "accuracy_table",
    "accuracy_variants",
    "activation_peak",
    "bridge_comparison",
    "codecs_section",
    "cost_models",
    "cost_section",
    "cost_table",
    "decoded_root",
    "decoder_macs",
    "effective_receptive_field",
    "evaluate_run",
    "inference_call",
    "latency",
    "load_results",
    "machine",
    "macs",
    "model_cost",
    "model_input",
    "notes",
    "parameters",
    "parse_sections",
    "plot_cost",
    "plot_rates",
    "prepare_data",
    "rates_section",
    "recipe_schedule",
    "regenerate_report",
    "render_report",
    "run_bench",
    "saved_for_backward",
    "study_jobs",
    "targets",
    "train_section",
    "train_step_cost",
    "train_variant",
    "write_report",
]
