"""Train on Kaggle's GPUs from a laptop (``latentface kaggle``), and what the Kaggle kernel runs.

- :mod:`~latentface.tools.kaggle.metadata`: slugs and the checks the kaggle CLI makes on
  kernel-metadata.json and dataset-metadata.json;
- :mod:`~latentface.tools.kaggle.client`: credentials and the ``kaggle`` command, always in a
  subprocess (importing the ``kaggle`` package logs in, so it is never imported);
- :mod:`~latentface.tools.kaggle.build`: the wheel, the kernel notebook (notebook 03), the
  build folders and the push;
- :mod:`~latentface.tools.kaggle.kernel`: the code notebook 03 calls inside the kernel.
"""

from latentface.tools.kaggle.build import (
    NOTEBOOK,
    Build,
    build_kernel,
    build_wheel,
    dataset_exists,
    kernel_notebook,
    project_root,
    push,
    wait_for_dataset,
    write_kernel_notebook,
)
from latentface.tools.kaggle.client import (
    KaggleCLI,
    credentials_help,
    find_credentials,
    kaggle_config_dirs,
    kaggle_executable,
    kaggle_username,
)
from latentface.tools.kaggle.kernel import (
    LOCAL_RECIPE,
    LOCAL_ROOT,
    ROOT_ENV,
    RUNTIME_MODULES,
    SMOKE_RECIPE,
    best_weights,
    configure_wandb,
    cuda_devices,
    final_evaluation,
    find_dataset,
    find_dataset_root,
    find_resume_run,
    find_wheels,
    input_mounts,
    install_package,
    kaggle_secret,
    kernel_root,
    local_recipe,
    missing_modules,
    prepare_local_input,
    resume_point,
    run_logged,
    run_progress,
    train_arguments,
    train_command,
    train_settings,
)
from latentface.tools.kaggle.metadata import (
    DATA_SLUG,
    DATASET_METADATA,
    KERNEL_METADATA,
    KERNEL_SLUG,
    LICENSES,
    MACHINE_SHAPE,
    MACHINE_SHAPES,
    PACKAGE_SLUG,
    KaggleSetupError,
    read_metadata,
    slugify,
    split_ref,
    title_for,
    validate_dataset_metadata,
    validate_kernel_metadata,
    write_metadata,
)

__all__ = [
    "DATASET_METADATA", "DATA_SLUG", "KERNEL_METADATA", "KERNEL_SLUG", "LICENSES", "LOCAL_RECIPE", "LOCAL_ROOT",
    "MACHINE_SHAPE", "MACHINE_SHAPES", "NOTEBOOK", "PACKAGE_SLUG", "ROOT_ENV", "RUNTIME_MODULES",
    "SMOKE_RECIPE", "Build", "KaggleCLI", "KaggleSetupError", "best_weights", "build_kernel", "build_wheel",
    "configure_wandb", "credentials_help", "cuda_devices", "dataset_exists", "final_evaluation", "find_credentials",
    "find_dataset", "find_dataset_root", "find_resume_run", "find_wheels", "input_mounts", "install_package",
    "kaggle_config_dirs", "kaggle_executable", "kaggle_secret", "kaggle_username", "kernel_notebook", "kernel_root",
    "local_recipe", "missing_modules", "prepare_local_input", "project_root", "push", "read_metadata",
    "resume_point", "run_logged", "run_progress", "slugify", "split_ref", "title_for", "train_arguments",
    "train_command", "train_settings", "validate_dataset_metadata", "validate_kernel_metadata", "wait_for_dataset",
    "write_kernel_notebook", "write_metadata",
]
