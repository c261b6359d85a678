"""`llmops render`, `validate`, `deploy`, `smoke`, `serve`, `canary verify`, and the `bench` render/smoke figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The packaged example (`llmops.resources.resolve`), unless the working directory has a file of that name.
GPU_EXAMPLE = "examples/gpu/deploy.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render a model version into validated vLLM manifests under OUT/<model>/<version>/",
        description="Render a registered version (or a model/adapter folder) into Kubernetes manifests for "
        "vLLM, validate them, and write them atomically to OUT/<model>/<version>/ (nothing is written when "
        "the config or a manifest is invalid).",
    )
    p.add_argument("--model-uri", help="models:/NAME@champion, models:/NAME@challenger, models:/NAME/3, or a folder")
    p.add_argument("--config", help="deploy config YAML (local or s3://); fields override k8s_templates/vllm/values.yaml")
    p.add_argument("--out", help="folder or s3:// prefix to write into (default: the manifests_uri setting)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one config field (dotted, YAML value), e.g. --set canary.weight=20; repeatable",
    )
    p.add_argument("--dry-run", action="store_true", help="print the manifests instead of writing them")
    p.add_argument(
        "--rbac",
        action="store_true",
        help="print the Role and RoleBinding `llmops canary verify` needs in mode kubernetes (the step service "
        "account on the canary's Services and objects) instead of writing the manifests",
    )
    p.add_argument("--explain", action="store_true", help="print every config field as a Markdown table and exit")
    p.add_argument("--summary-json", help="write a summary JSON here")
    p.set_defaults(handler=_render)

    p = sub.add_parser(
        "validate",
        help="validate every manifest under a folder (Kubernetes schema, strict; custom resources against the "
        "cluster's CRDs in mode kubernetes, else the crd_dir setting's CRD files, else the project's schemas)",
    )
    p.add_argument("dir", help="folder of rendered manifests")
    p.add_argument("--summary-json", help="write a summary JSON here")
    p.set_defaults(handler=_validate)

    p = sub.add_parser(
        "deploy",
        help="make a rendered version live: move the GitOps pointer, or --apply it and wait for the rollout",
        description="Validate OUT/<model>/<version>/ and make it the live version (OUT/<model>/kustomization.yaml). "
        "With --apply, first server-side apply it to the cluster and wait for the rollout; on failure the "
        "previous live version is applied again and the command fails with the reason.",
    )
    p.add_argument("--manifests", required=True, help="the version folder written by llmops render")
    p.add_argument("--apply", action="store_true", help="apply to the cluster of the kubeconfig (or in-cluster)")
    p.add_argument("--context", help="kubeconfig context for --apply")
    p.add_argument("--timeout-s", type=float, help="rollout timeout (default: the Deployment's progress deadline)")
    p.add_argument("--summary-json", help="write a summary JSON here")
    p.set_defaults(handler=_deploy)

    for command in ("smoke", "serve"):
        p = sub.add_parser(
            command,
            help="serve a model version on CPU with the pinned vLLM and its rendered arguments (fallback: "
            "transformers), check it as a client and report start-up, latency, TTFT, tokens/s"
            if command == "smoke" else
            "run vLLM locally from a rendered manifests folder (its Deployment or ServingRuntime arguments), "
            "check the served models, completions, chat and /metrics, then stop it",
        )
        p.add_argument("--model-uri", required=command == "smoke",
                       help="models:/ URI or a model/adapter folder (serve: to map the pod's weight paths "
                       "exactly; default: the mount maps to the data root)")
        p.add_argument("--manifests", required=command == "serve",
                       help="folder written by `llmops render` (smoke default: render --model-uri with --config)")
        p.add_argument("--config", help="deploy config to render with (default: the deploy_config_uri setting, else the example of the mode)")
        p.add_argument("--engine", choices=("auto", "vllm", "transformers"),
                       default="auto" if command == "smoke" else "vllm",
                       help="vllm: the serving environment (`make vllm`); transformers: load with "
                       "transformers+peft; auto: vllm when its environment exists and the CPU can run it")
        p.add_argument("--prompt", help="prompt to answer (default: the first sample question)")
        p.add_argument("--expect", help="text the answer must contain (exit 2 otherwise)")
        p.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate (greedy)")
        p.add_argument("--summary-json", help="write a summary JSON here")
        p.set_defaults(handler=_smoke if command == "smoke" else _serve)

    p = sub.add_parser(
        "canary",
        help="verify a rendered canary: serve champion and challenger side by side, replay prompts, then move "
        "its weight or roll it back",
    )
    canary_sub = p.add_subparsers(dest="canary_command", metavar="ACTION", required=True)
    p = canary_sub.add_parser(
        "verify",
        help="check the challenger against the champion and set the canary's weight (exit 0), or roll the folder "
        "back to the stable-only manifests (exit 3, the reason on stderr and in canary-verification.json)",
        description="Mode local: one `vllm serve` of the canary's rendered arguments with the champion's adapter "
        "beside the challenger's (multi-LoRA). Mode kubernetes: the stable and canary Services through the "
        "Kubernetes API server's service proxy. Recent traffic is replayed (else the evaluation items); the "
        "challenger must be listed by /v1/models with the base as parent and not regress (see llmops.deploy.canary).",
    )
    p.add_argument("--manifests", required=True, help="the version folder written by `llmops render`")
    p.add_argument("--mode", choices=("local", "kubernetes"), help="where both adapters are served (default: the "
                   "mode setting)")
    p.add_argument("--prompts", type=int, default=16, help="prompts to replay (1-64)")
    p.add_argument("--traffic", help="traffic records to replay (default: the traffic setting)")
    p.add_argument("--dataset", help="dataset version whose evaluation items are replayed when there is no traffic "
                   "(default: the latest under the dataset root)")
    p.add_argument("--tolerance", type=int, default=1, help="correct answers the challenger may have fewer than "
                   "the champion (paired)")
    p.add_argument("--latency-factor", type=float, default=3.0, help="the challenger's median latency may be at "
                   "most this many times the champion's (0: not checked)")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens per answer (greedy)")
    p.add_argument("--context", help="kubeconfig context (mode kubernetes)")
    p.add_argument("--summary-json", help="write a summary JSON here")
    p.set_defaults(handler=_canary_verify)


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser("render", help="time render + validate of one version (cold process, then warm)")
    p.add_argument("--model-uri", help="version to render (default: a LoRA adapter on the tiny local base model)")
    p.add_argument("--config", default=GPU_EXAMPLE, help=f"deploy config (default: {GPU_EXAMPLE})")
    p.add_argument("--repeat", type=int, default=5, help="warm renders to take the median of")
    p.add_argument("--json", action="store_true", help="print JSON only (always JSON; kept for symmetry)")
    p.set_defaults(handler=_bench_render)

    p = bench_sub.add_parser("smoke", help="time the CPU smoke test (load, generate, tokens/s) on the tiny model")
    p.add_argument("--model-uri", help="version to load (default: a LoRA adapter on the tiny local base model)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print JSON only (always JSON; kept for symmetry)")
    p.set_defaults(handler=_bench_smoke)

    p = bench_sub.add_parser(
        "serve", help="the pinned vLLM on the tiny base + LoRA: start-up eager and compiled, warm latency and "
        "tokens/s, two adapters against one (four server starts, minutes; needs `make vllm`)")
    p.add_argument("--config", default="examples/local/deploy.yaml", help="deploy config whose rendered "
                   "arguments are served (default: examples/local/deploy.yaml)")
    p.add_argument("--requests", type=int, default=10, help="timed requests per served name (after one warm-up)")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens generated per request")
    p.add_argument("--no-compiled", action="store_true", help="skip the two servers without --enforce-eager")
    p.set_defaults(handler=_bench_serve)


def _bench_serve(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.bench.serve import bench_serve

    print_json(bench_serve(args.config, requests=args.requests, max_tokens=args.max_tokens,
                           compiled=not args.no_compiled))
    return 0


def _overrides(pairs: list[str]) -> dict:
    import yaml

    from llmops.exceptions import ConfigError

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: use FIELD=VALUE, e.g. --set canary.weight=20")
        field, raw = pair.split("=", 1)
        out[field.strip()] = yaml.safe_load(raw)
    return out


def _render(args: argparse.Namespace) -> int:
    import time

    from llmops.cli import emit_summary
    from llmops.contracts import RenderSummary
    from llmops.deploy.config import explain_markdown, load_config
    from llmops.deploy.render import render_uri, write
    from llmops.exceptions import ConfigError
    from llmops.settings import load_settings

    if args.explain:
        print(explain_markdown())
        return 0
    if not args.model_uri:
        raise ConfigError("--model-uri is required: models:/NAME@champion, models:/NAME/3 or a model folder")
    settings = load_settings()
    config = load_config(args.config, settings, **_overrides(args.set))
    t0 = time.perf_counter()
    rendered = render_uri(args.model_uri, config)
    render_s = time.perf_counter() - t0
    if args.rbac:
        from llmops.deploy.rbac import canary_rbac

        print(canary_rbac(rendered, settings.kubernetes.service_account, settings.kubernetes.namespace), end="")
        return 0
    if args.dry_run:
        for fname, text in rendered.files.items():
            print(f"--- # {fname}\n{text}", end="")
        return 0
    out = args.out or settings.manifests
    t1 = time.perf_counter()
    folder, changed = write(rendered, out)
    summary = RenderSummary(
        manifests_uri=folder,
        out=out,
        model=rendered.model.name,
        model_dir=rendered.model_dir,
        version=rendered.model.version,
        run_id=rendered.model.run_id,
        stable_version=rendered.stable.version if rendered.stable else None,
        name=rendered.name,
        namespace=rendered.namespace,
        files=list(rendered.files),
        changed=changed,
        validated_by=rendered.validated_by,
        render_validate_s=round(render_s, 4),
        write_s=round(time.perf_counter() - t1, 4),
    )
    return emit_summary(args, summary.to_json())


def _validate(args: argparse.Namespace) -> int:
    import sys

    from llmops.cli import emit_summary
    from llmops.exceptions import ManifestInvalid
    from llmops.k8s.validate import check_dir

    folder = Path(args.dir)
    if not folder.is_dir():
        raise ManifestInvalid(f"{args.dir} is not a folder: give the folder llmops render wrote")
    results = check_dir(folder)
    if not results:
        raise ManifestInvalid(f"{args.dir} holds no YAML files")
    invalid = {f: [str(p) for p in report.problems] for f, report in results.items() if report.problems}
    for f, report in results.items():
        by = ", ".join(f"{obj}: {src}" for obj, src in report.validated_by.items())
        print(f"{'INVALID' if report.problems else 'ok     '} {f}" + (f"  ({by})" if by else ""), file=sys.stderr)
        for p in report.problems:
            print(f"  {p}", file=sys.stderr)
    summary = {
        "dir": str(folder),
        "files": len(results),
        "valid": len(results) - len(invalid),
        "invalid": invalid,
        "validated_by": {f: report.validated_by for f, report in results.items() if report.validated_by},
    }
    emit_summary(args, summary)
    if invalid:
        print(f"llmops validate: {len(invalid)} of {len(results)} files are invalid", file=sys.stderr)
        return ManifestInvalid.exit_code
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from llmops.cli import emit_summary
    from llmops.deploy.publish import deploy_folder, kube_api_from_kubeconfig

    api = kube_api_from_kubeconfig(args.context) if args.apply else None
    summary = deploy_folder(args.manifests, api=api, timeout_s=args.timeout_s)
    return emit_summary(args, summary)


def _canary_verify(args: argparse.Namespace) -> int:
    from llmops.cli import emit_summary
    from llmops.deploy import canary
    from llmops.exceptions import CanaryRejected
    from llmops.settings import load_settings

    settings = load_settings()
    mode = args.mode or settings.mode
    proxy = api = None
    if mode == "kubernetes":
        from llmops.deploy.publish import kube_api_from_kubeconfig

        api = kube_api_from_kubeconfig(args.context)
        proxy = canary.KubeServiceProxy(api.dynamic.client)

    def prompts() -> tuple[list, str]:
        from llmops.evaluation.data import latest_dataset_uri

        dataset = args.dataset or latest_dataset_uri(settings.dataset_root)
        return canary.replay_prompts(args.prompts, args.traffic or settings.traffic, dataset)

    try:
        summary = canary.verify(args.manifests, mode=mode, prompts=prompts, max_tokens=args.max_tokens,
                                tolerance=args.tolerance, latency_factor=args.latency_factor, proxy=proxy, api=api)
    except CanaryRejected as exc:
        emit_summary(args, exc.summary)  # type: ignore[attr-defined]
        raise
    return emit_summary(args, summary)


def _smoke(args: argparse.Namespace) -> int:
    from llmops.cli import emit_summary
    from llmops.deploy.smoke import smoke

    summary = smoke(args.model_uri, prompt=args.prompt, max_new_tokens=args.max_new_tokens, engine=args.engine,
                    manifests=args.manifests, config=args.config, expect=args.expect)
    if summary.get("fallback_reason"):
        print(f"llmops smoke: {summary['fallback_reason']}", file=sys.stderr)
    return emit_summary(args, summary)


def _serve(args: argparse.Namespace) -> int:
    if args.model_uri:
        return _smoke(args)
    from llmops.cli import emit_summary
    from llmops.deploy.config import load_config
    from llmops.deploy.smoke import default_prompt
    from llmops.deploy.vllm_serve import read_folder, serve_and_check
    from llmops.settings import load_settings

    settings = load_settings()
    cfg = load_config(args.config or settings.deploy_config, settings)
    path_map = {cfg.source.mount_path: str(storage_local(settings.storage.data_root))}
    summary = serve_and_check(read_folder(args.manifests), path_map, args.prompt or default_prompt(),
                              args.max_new_tokens, args.expect)
    return emit_summary(args, summary)


def storage_local(uri: str) -> Path:
    from llmops import storage

    return storage.local_path(uri)


def _bench_render(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.bench.deploy import bench_render

    print_json(bench_render(args.model_uri, args.config, repeat=args.repeat))
    return 0


def _bench_smoke(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.bench.deploy import bench_smoke

    print_json(bench_smoke(args.model_uri, max_new_tokens=args.max_new_tokens))
    return 0
