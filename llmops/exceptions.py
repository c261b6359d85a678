"""Every error the core raises on purpose.

Each one is narrow enough that a caller (an operator, the CLI, a test) can tell what went wrong
without parsing a message, and each message names the input, what is wrong with it, and the fix.
The CLI maps them to exit codes; `GateRejected` and `DriftDetected` are verdicts, not failures.
"""

from __future__ import annotations

SKIP_EXIT_CODE = 3
"""Exit code of a step whose answer is "no" (gate rejected, drift found, no model to evaluate): the step
operators skip the task on it instead of failing (`operators/evaluation.py`)."""


class LlmopsError(Exception):
    """Base class: an error the project raises on purpose, with a message meant for the user."""

    exit_code = 2


class ConfigError(LlmopsError, ValueError):
    """A setting or config value is invalid; the message names the field, the value and the fix."""


class StorageError(LlmopsError):
    """A URI cannot be read or written: wrong scheme, missing object, missing credentials."""


class PathNotAllowed(StorageError):
    """A report page asked for a location outside the configured storage roots."""


class InputDataError(LlmopsError, ValueError):
    """Input data (documents, training rows, traffic) is unusable as a whole."""


class PreprocessError(LlmopsError):
    """The RAG preprocessing job failed as a whole (a single bad document is quarantined instead)."""


class VectorStoreError(LlmopsError):
    """The vector store cannot be opened, written or searched."""


class ModelLoadError(LlmopsError):
    """A base model, adapter or registered model version cannot be found or loaded."""


class CheckpointError(LlmopsError):
    """No usable checkpoint where one is required (`--resume true`), or a checkpoint is corrupt."""


class TrainingInterrupted(LlmopsError):
    """Training stopped on SIGTERM after writing a checkpoint; a retry resumes from it."""

    exit_code = 143


class EvaluationError(LlmopsError):
    """An evaluation cannot run or its results cannot be read."""


class GateRejected(LlmopsError):
    """The evaluation gate decided not to promote the candidate (a verdict, exit code 3)."""

    exit_code = SKIP_EXIT_CODE


class RegistryError(LlmopsError):
    """MLflow registration, alias movement or lookup failed."""


class ManifestInvalid(LlmopsError):
    """A rendered Kubernetes manifest does not validate against its schema."""


class DeploymentError(LlmopsError):
    """Applying manifests or waiting for a rollout failed."""


class CanaryRejected(DeploymentError):
    """The challenger failed the canary check (not listed, not answering, or regressing against the
    champion): its traffic weight was not moved and the canary files were rolled back (a verdict, exit 3)."""

    exit_code = SKIP_EXIT_CODE


class DriftDetected(LlmopsError):
    """The drift monitor found significant drift (a verdict, exit code 3)."""

    exit_code = SKIP_EXIT_CODE


class NotEnoughData(LlmopsError):
    """Too few samples to give a drift verdict (exit code 4)."""

    exit_code = 4


class DocumentRejected(InputDataError):
    """One document cannot be indexed (empty, binary, undecodable, corrupt, oversized...): it is
    quarantined with this reason and the job goes on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ModelNotFound(ModelLoadError):
    """A model URI names nothing: an unset alias, a missing version or folder (`--skip-if-missing`)."""


class DatasetError(LlmopsError):
    """A dataset build cannot run: no usable generator endpoint, a bad steer file, a corrupt dataset root."""


class LeaseHeld(LlmopsError):
    """A run folder (training output, preprocessing output, dataset root) is held by another live writer;
    the message names it (host, pid, since). Exit code 75 (EX_TEMPFAIL): a later retry may succeed."""

    exit_code = 75


class LeaseLost(LlmopsError):
    """This writer's lease on its run folder was taken over (its heartbeat was presumed dead): it stops
    before writing again, so two writers never write one folder at once. Exit code 75."""

    exit_code = 75
